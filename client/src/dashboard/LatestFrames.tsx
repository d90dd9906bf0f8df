// The newest frames, each with all its layers side by side (small images the server made).
import type { ShownFrame } from "./useLatestFrames.js";
import { formatAgo } from "./format.js";

export function LatestFrames({ frames, now }: { frames: ShownFrame[]; now: number }) {
  return (
    <section className="panel">
      <h2>Latest frames</h2>
      <div className="frames" data-testid="thumbnails">
        {frames.length === 0 && <div className="muted">no frames yet</div>}
        {frames.map((f) => (
          <figure className="frame" key={f.key}>
            <figcaption>
              <span className="mono">{f.job}</span> · frame {f.frame} · <span className="mono" title={f.session}>{f.session}</span>
              <span className="muted"> · {formatAgo(f.at, now)}</span>
            </figcaption>
            <div className="layers">
              {f.layers.map((l) => (
                <div className="layer" key={l.layer}>
                  <img src={l.url} alt={`${f.job} ${f.frame} ${l.layer}`} data-layer={l.layer} width={l.width} height={l.height} />
                  <div className="layer-name">{l.layer}</div>
                </div>
              ))}
            </div>
          </figure>
        ))}
      </div>
    </section>
  );
}
