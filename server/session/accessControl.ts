// Who may connect: the run's token (compared in constant time), a cap on live sessions, a rate limit
// on FAILED authentications per address and on messages per socket, so a flood is refused cheaply
// and logged in bounded volume instead of taking the server down, while a tab that shows the right
// token is never refused by a limiter (only by the session cap).
import { createHmac, timingSafeEqual } from "node:crypto";
import type http from "node:http";
import { RateLimiterMemory } from "rate-limiter-flexible";
import { Decoder, Encoder, PacketType } from "socket.io-parser";
import { PAGE_LAYERS } from "../../protocol/grab.js";

export function tokenMatches(expected: string, given: unknown): boolean {
  if (typeof given !== "string") return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The request target (`req.url`) as a URL, or undefined when it is not one. Every route reads the
 * target through this, so a malformed one (`//[`, `http://[`, `*`) is a 400, never an exception.
 * Origin-form (`/path?query`) is read as a path even when it starts with `//`; absolute-form
 * (`http://host/path`) is accepted as HTTP/1.1 requires.
 */
export function parseRequestTarget(target: string | undefined): URL | undefined {
  if (typeof target !== "string" || target.length > 8192) return undefined;
  try {
    if (target.startsWith("/")) return new URL(`http://tabfarm${target}`);
    const url = new URL(target);
    return url.protocol === "http:" || url.protocol === "https:" ? url : undefined;
  } catch {
    return undefined;
  }
}

/** The token from `Authorization: Bearer …` (scheme in any case) or `?token=…`; undefined when neither is there. */
export function requestToken(headers: http.IncomingHttpHeaders, target: URL | undefined): string | undefined {
  const auth = headers.authorization;
  const bearer = typeof auth === "string" ? /^bearer[ \t]+(\S*)[ \t]*$/i.exec(auth) : null;
  if (bearer) return bearer[1];
  return target?.searchParams.get("token") ?? undefined;
}

/**
 * Proves to the farm that the harness opened a tab: an HMAC of the tab's worker name under a secret
 * that never leaves the server process. A page that claims a launched tab's name without it is
 * treated as opened by hand, so it cannot get the real tab recycled or killed.
 */
export function workerProof(secret: Buffer, worker: string): string {
  return createHmac("sha256", secret).update(worker).digest("base64url");
}

export interface Limits {
  /** Failed authentications per address per 10 s before its failures are refused without a check. */
  failedAuthPer10s: number;
  /** Events a socket may send per second (pages send only hello and sceneError). */
  messagesPerSecond: number;
}

export class AccessControl {
  private readonly failures: RateLimiterMemory;
  private readonly messages: RateLimiterMemory;

  constructor(limits: Limits) {
    this.failures = new RateLimiterMemory({ points: limits.failedAuthPer10s, duration: 10 });
    this.messages = new RateLimiterMemory({ points: limits.messagesPerSecond, duration: 1 });
  }

  /** Counts a failed authentication from `address`; true once it has failed too often (blocked). */
  async recordFailure(address: string): Promise<boolean> {
    return this.failures.consume(address).then(() => false, () => true);
  }

  async allowMessage(socketId: string): Promise<boolean> {
    return this.messages.consume(socketId).then(() => true, () => false);
  }
}

/** A log that prints at most `perMinute` lines a minute per topic and then says how many it held back. */
export function throttledLog(log: (line: string) => void, perMinute = 20): (topic: string, line: string) => void {
  const windows = new Map<string, { start: number; printed: number; held: number }>();
  return (topic, line) => {
    const now = Date.now();
    let w = windows.get(topic);
    if (!w || now - w.start > 60_000) {
      if (w?.held) log(`(${w.held} more '${topic}' messages were not shown)`);
      w = { start: now, printed: 0, held: 0 };
      windows.set(topic, w);
    }
    if (w.printed < perMinute) {
      w.printed++;
      // The last line of the minute says so: a flood that stops would otherwise never say it was cut.
      log(w.printed === perMinute ? `${line} (further '${topic}' messages are not shown for up to a minute)` : line);
    } else w.held++;
  };
}

/** Longest text message (one socket.io packet as JSON) a page may send: its hello, a scene error, a grab reply's metadata. */
export const TEXT_MESSAGE_CHARS = 64 * 1024;

/** Binary attachments a grab reply may carry: its image, its 3D boxes, and one per page layer. */
export const MAX_REPLY_ATTACHMENTS = 2 + PAGE_LAYERS.length;

/**
 * socket.io's packet decoder held to what pages send. Binary data comes only in grab replies, with at most
 * MAX_REPLY_ATTACHMENTS attachments of at most `maxReplyBytes` in all: socket.io's default of 10
 * attachments per packet, each up to the frame limit, let one socket make the server hold 10 frames
 * (650 MB) for a single packet, and a few such sockets exhaust its memory. Text packets are bounded too,
 * so no socket makes the server parse megabytes of JSON. A packet that breaks these rules is a protocol
 * error: socket.io closes the connection (and Farm cuts it).
 */
export function pageParser(maxReplyBytes: number) {
  class PageDecoder extends Decoder {
    /** Bytes of the attachments of the packet being reassembled (a text message starts a packet). */
    private binaryBytes = 0;

    constructor() {
      super({ maxAttachments: MAX_REPLY_ATTACHMENTS });
    }

    override add(message: unknown): void {
      if (typeof message === "string") {
        if (message.length > TEXT_MESSAGE_CHARS) throw new Error(`a text message of ${message.length} characters (at most ${TEXT_MESSAGE_CHARS})`);
        if (message.startsWith(String(PacketType.BINARY_EVENT))) throw new Error("an event with binary data (pages send binary data only in replies to grabs)");
        this.binaryBytes = 0;
      } else {
        this.binaryBytes += (message as ArrayBuffer | Uint8Array)?.byteLength ?? 0;
        if (this.binaryBytes > maxReplyBytes) throw new Error(`a reply whose attachments hold more than ${maxReplyBytes} bytes`);
      }
      super.add(message);
    }
  }
  return { Encoder, Decoder: PageDecoder };
}
