// The newest frames' thumbnails as object URLs: only LATEST_FRAMES_SHOWN frames are kept, and the
// URLs of a frame that drops out (or of all of them when the page goes) are revoked, so a long run
// does not pile up image blobs in the page.
import { useCallback, useEffect, useRef, useState } from "react";
import { LATEST_FRAMES_SHOWN, type FrameThumbnails } from "../../../protocol/dashboard.js";

export interface ShownLayer {
  layer: string;
  url: string;
  width: number;
  height: number;
}

export interface ShownFrame {
  key: string;
  job: string;
  frame: number;
  session: string;
  at: number;
  layers: ShownLayer[];
}

function toShown(thumbnails: FrameThumbnails): ShownFrame {
  const layers = (Array.isArray(thumbnails.layers) ? thumbnails.layers : []).map((l) => ({
    layer: String(l.layer),
    // Copied into a fresh ArrayBuffer-backed view: a Blob part must not be a SharedArrayBuffer view.
    url: URL.createObjectURL(new Blob([new Uint8Array(l.data)], { type: l.mime })),
    width: l.width,
    height: l.height,
  }));
  return { key: `${thumbnails.job}\u0000${thumbnails.frame}`, job: String(thumbnails.job), frame: thumbnails.frame, session: String(thumbnails.session), at: thumbnails.at, layers };
}

const revoke = (frames: ShownFrame[]) => frames.forEach((f) => f.layers.forEach((l) => URL.revokeObjectURL(l.url)));

export function useLatestFrames() {
  const [frames, setFrames] = useState<ShownFrame[]>([]);
  // The list lives in a ref so revoking happens outside React's state updaters (which may run twice).
  const current = useRef<ShownFrame[]>([]);

  const addFrame = useCallback((thumbnails: FrameThumbnails) => {
    const added = toShown(thumbnails);
    const others = current.current.filter((f) => f.key !== added.key);
    const next = [added, ...others].slice(0, LATEST_FRAMES_SHOWN);
    const kept = new Set(next);
    revoke(current.current.filter((f) => !kept.has(f)));
    current.current = next;
    setFrames(next);
  }, []);

  useEffect(() => () => {
    revoke(current.current);
    current.current = [];
  }, []);

  return { frames, addFrame };
}
