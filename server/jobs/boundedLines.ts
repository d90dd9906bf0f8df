// Splits a file into lines in bounded memory. node:readline (and FileHandle.readLines) buffers a line
// of any length before handing it over: a 120 MB line took 3.6 GB to refuse. Here a line longer
// than the cap is dropped chunk by chunk as it is read, and reported by its number and size.
import type { FileHandle } from "node:fs/promises";

const CHUNK_BYTES = 64 * 1024;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

export type RawLine =
  /** `bytes` holds the line without its "\n" or "\r\n". */
  | { line: number; bytes: Buffer }
  /** The line was over the cap; `bytes` is its full length (it was not kept). */
  | { line: number; tooLong: number };

/** Yields the lines of `handle` (1-based numbers), never holding more than `maxLineBytes` of one line. */
export async function* readBoundedLines(handle: FileHandle, maxLineBytes: number): AsyncGenerator<RawLine> {
  let line = 1;
  let parts: Buffer[] = [];
  let kept = 0; // bytes in `parts`
  let dropped = 0; // bytes of the current line seen after it went over the cap (then `parts` is empty)

  const finish = (): RawLine => {
    const result: RawLine = dropped > 0 ? { line, tooLong: kept + dropped } : { line, bytes: withoutCarriageReturn(Buffer.concat(parts, kept)) };
    parts = [];
    kept = 0;
    dropped = 0;
    line++;
    return result;
  };
  const take = (piece: Buffer) => {
    if (dropped > 0 || kept + piece.length > maxLineBytes) {
      dropped += kept + piece.length;
      parts = [];
      kept = 0;
    } else if (piece.length > 0) {
      parts.push(piece);
      kept += piece.length;
    }
  };

  for (;;) {
    // A fresh buffer per read: pieces of it stay referenced in `parts` until their line is complete.
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    const { bytesRead } = await handle.read(chunk, 0, CHUNK_BYTES, null);
    if (bytesRead === 0) break;
    const data = chunk.subarray(0, bytesRead);
    let start = 0;
    for (let nl = data.indexOf(NEWLINE); nl !== -1; nl = data.indexOf(NEWLINE, start)) {
      take(data.subarray(start, nl));
      yield finish();
      start = nl + 1;
    }
    take(data.subarray(start));
  }
  if (kept > 0 || dropped > 0) yield finish(); // a last line without a final newline
}

function withoutCarriageReturn(bytes: Buffer): Buffer {
  return bytes.length > 0 && bytes[bytes.length - 1] === CARRIAGE_RETURN ? bytes.subarray(0, -1) : bytes;
}
