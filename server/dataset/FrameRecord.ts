// One line of frames.jsonl: where a frame's image is and how it was taken.
export interface FrameRecord {
  job: string;
  /** Index of the frame within its job. */
  frame: number;
  /** Image path relative to the dataset folder. */
  file: string;
  width: number;
  height: number;
  format: string;
  K: number[][];
  cameraToWorld: number[][];
  params: Record<string, unknown>;
  session: string;
  render_ms: number;
  encode_ms: number;
  attempt: number;
  [extra: string]: unknown;
}
