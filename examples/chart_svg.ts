/**
 * The SVG chart of a GRPO training run (examples/train-grpo.ts): three panels over one step axis —
 * reward (per step and its 10-step trailing mean, with the random policy's 1/V and the 0.9 target),
 * entropy of the sampling policy (nats), and the clip fraction of the PPO updates. Plain SVG 1.1 text, no
 * dependencies, the same bytes for the same history (numbers are printed with fixed decimals).
 */
import type { StepLog } from './train-grpo';

export interface ChartOptions {
  title: string;
  /** Reward of the random policy, drawn as a dashed line. */
  randomReward: number;
}

const WIDTH = 720;
const PANEL_HEIGHT = 150;
const GAP = 34;
const LEFT = 64;
const RIGHT = 16;
const TOP = 40;
const BOTTOM = 40;
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

/** One panel of a chart: its lines share a y axis [0, yMax]; guides are dashed horizontal lines. */
export interface Panel {
  label: string;
  lines: { values: number[]; color: string; width: number; opacity?: number; name: string }[];
  yMax: number;
  guides: { y: number; text: string }[];
}

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Round tick spacing (1, 2 or 5 × 10^k) giving about `count` ticks over [0, max]. */
function tickStep(max: number, count: number): number {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? raw;
}

/** Mean of the `window` values ending at each index (fewer at the start). */
export function trailing(values: number[], window: number): number[] {
  let sum = 0;
  return values.map((v, i) => {
    sum += v - (i >= window ? values[i - window] : 0);
    return sum / Math.min(i + 1, window);
  });
}

/** The chart of `history` as an SVG document. */
export function trainingChartSvg(history: readonly StepLog[], options: ChartOptions): string {
  const steps = history.length;
  const rewards = history.map((h) => h.reward);
  const entropy = history.map((h) => h.entropy);
  const clip = history.map((h) => h.clipFraction);
  const panels: Panel[] = [
    {
      label: 'reward',
      yMax: 1,
      lines: [
        { values: rewards, color: '#2563eb', width: 1, opacity: 0.45, name: 'per step' },
        { values: trailing(rewards, 10), color: '#1d4ed8', width: 2, name: '10-step mean' },
      ],
      guides: [
        { y: 0.9, text: 'target 0.9' },
        { y: options.randomReward, text: `random 1/V = ${options.randomReward.toFixed(3)}` },
      ],
    },
    {
      label: 'entropy (nats)',
      yMax: Math.max(...entropy, 1e-9) * 1.05,
      lines: [{ values: entropy, color: '#059669', width: 2, name: 'entropy' }],
      guides: [],
    },
    {
      label: 'clip fraction',
      yMax: Math.max(...clip, 1e-3) * 1.1,
      lines: [{ values: clip, color: '#dc2626', width: 1.5, name: 'clip fraction' }],
      guides: [],
    },
  ];
  return chartSvg(options.title, steps, panels);
}

/** Panels stacked over one step axis (steps numbered from 1), as an SVG document. */
export function chartSvg(title: string, steps: number, panels: readonly Panel[]): string {
  const plotWidth = WIDTH - LEFT - RIGHT;
  const height = TOP + panels.length * PANEL_HEIGHT + (panels.length - 1) * GAP + BOTTOM;
  const x = (s: number) => LEFT + (steps <= 1 ? 0 : (s / (steps - 1)) * plotWidth);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="22" ${FONT} font-size="14" font-weight="600" fill="#111827">${esc(title)}</text>`,
  ];
  panels.forEach((panel, p) => {
    const top = TOP + p * (PANEL_HEIGHT + GAP);
    const y = (v: number) => top + PANEL_HEIGHT - (Math.min(v, panel.yMax) / panel.yMax) * PANEL_HEIGHT;
    out.push(`<rect x="${LEFT}" y="${top}" width="${plotWidth}" height="${PANEL_HEIGHT}" fill="#f9fafb" stroke="#d1d5db"/>`);
    const dy = tickStep(panel.yMax, 4);
    const decimals = Math.max(0, -Math.floor(Math.log10(dy)));
    for (let v = 0; v <= panel.yMax + 1e-12; v += dy) {
      out.push(`<line x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e5e7eb"/>`);
      out.push(`<text x="${LEFT - 6}" y="${(y(v) + 4).toFixed(1)}" ${FONT} font-size="11" fill="#6b7280" text-anchor="end">${v.toFixed(decimals)}</text>`);
    }
    for (const guide of panel.guides) {
      out.push(`<line x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${y(guide.y).toFixed(1)}" y2="${y(guide.y).toFixed(1)}" stroke="#9ca3af" stroke-dasharray="4 3"/>`);
      out.push(`<text x="${LEFT + plotWidth - 4}" y="${(y(guide.y) - 4).toFixed(1)}" ${FONT} font-size="10" fill="#6b7280" text-anchor="end">${esc(guide.text)}</text>`);
    }
    for (const line of panel.lines) {
      const points = line.values.map((v, s) => `${x(s).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      const opacity = line.opacity === undefined ? '' : ` stroke-opacity="${line.opacity}"`;
      out.push(`<polyline fill="none" stroke="${line.color}" stroke-width="${line.width}"${opacity} points="${points}"/>`);
    }
    out.push(`<text x="${LEFT + 6}" y="${top + 15}" ${FONT} font-size="12" font-weight="600" fill="#374151">${esc(panel.label)}</text>`);
    if (panel.lines.length > 1) {
      const legend = panel.lines.map((l) => `<tspan fill="${l.color}">— ${esc(l.name)}</tspan>`).join('  ');
      out.push(`<text x="${LEFT + 6}" y="${top + 30}" ${FONT} font-size="10">${legend}</text>`);
    }
  });
  const bottom = TOP + panels.length * PANEL_HEIGHT + (panels.length - 1) * GAP;
  // Steps are numbered from 1; ticks at 1 and at multiples of a round spacing.
  const dx = tickStep(Math.max(steps, 1), 6);
  const ticks = [1];
  for (let n = dx; n <= steps; n += dx) if (n - 1 > dx / 4) ticks.push(n);
  for (const n of ticks) {
    out.push(`<text x="${x(n - 1).toFixed(1)}" y="${bottom + 16}" ${FONT} font-size="11" fill="#6b7280" text-anchor="middle">${n}</text>`);
  }
  out.push(`<text x="${LEFT + plotWidth / 2}" y="${bottom + 33}" ${FONT} font-size="12" fill="#374151" text-anchor="middle">step</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
