// frames/s over the run, drawn by uPlot: one chart made when the panel mounts, fed new columns as
// `rate` events come, sized to its panel (which the latest-frames panel beside it makes tall).
import { useEffect, useRef } from "react";
import "./validLanguage.js";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { RateSeries } from "./rateSeries.js";

const AXIS = { stroke: "#9aa3b2", grid: { stroke: "#262b36", width: 1 }, ticks: { stroke: "#262b36", width: 1 } };
const pad = (n: number) => String(n).padStart(2, "0");

/** One row of tick labels in the page's time: hh:mm, with seconds while the chart spans under 10 minutes. */
function timeLabels(u: uPlot, splits: number[]): string[] {
  const span = (u.scales.x!.max ?? 0) - (u.scales.x!.min ?? 0);
  return splits.map((s) => {
    const d = new Date(s * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}${span < 600 ? `:${pad(d.getSeconds())}` : ""}`;
  });
}

export function RateChart({ series }: { series: RateSeries }) {
  const frame = useRef<HTMLDivElement>(null);
  const target = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);

  useEffect(() => {
    const box = frame.current!;
    const size = () => ({ width: Math.max(200, box.clientWidth), height: Math.max(160, box.clientHeight) });
    const plot = new uPlot(
      {
        ...size(),
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Number.isFinite(max) ? Math.max(1, max * 1.1) : 1] } },
        axes: [
          { ...AXIS, space: 70, values: timeLabels },
          { ...AXIS, size: 44, label: "frames/s", labelSize: 16 },
        ],
        series: [{}, { label: "frames/s", stroke: "#4cc2ff", width: 2, fill: "rgba(76,194,255,0.12)", points: { show: false } }],
      },
      [[], []],
      target.current!,
    );
    chart.current = plot;
    const resize = new ResizeObserver(() => plot.setSize(size()));
    resize.observe(box);
    return () => {
      resize.disconnect();
      plot.destroy();
      chart.current = null;
    };
  }, []);

  useEffect(() => {
    chart.current?.setData([series.seconds, series.fps]);
  }, [series]);

  return (
    <div className="chart" ref={frame}>
      {/* uPlot owns this element's children (absolutely placed, so its canvas never sizes the panel). */}
      <div className="chart-plot" ref={target} />
      {series.seconds.length === 0 && <div className="chart-empty">no frames yet</div>}
    </div>
  );
}
