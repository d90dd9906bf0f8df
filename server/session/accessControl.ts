// Who may connect: the run's token (compared in constant time), a cap on live sessions, and rate
// limits on connection attempts per address and on messages per socket, so a flood is refused
// cheaply and logged in bounded volume instead of taking the server down.
import { timingSafeEqual } from "node:crypto";
import { RateLimiterMemory } from "rate-limiter-flexible";

export function tokenMatches(expected: string, given: unknown): boolean {
  if (typeof given !== "string") return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The token from `Authorization: Bearer …` or `?token=…`. */
export function requestToken(headers: Record<string, string | string[] | undefined>, url: string | undefined): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === "string" && auth.startsWith("Bearer ")) return auth.slice(7).trim();
  return new URL(url ?? "/", "http://x").searchParams.get("token") ?? undefined;
}

export interface Limits {
  /** Connection attempts per address per 10 s. */
  connectionsPer10s: number;
  /** Events a socket may send per second (pages send only hello and sceneError). */
  messagesPerSecond: number;
}

export class AccessControl {
  private readonly connections: RateLimiterMemory;
  private readonly messages: RateLimiterMemory;

  constructor(limits: Limits) {
    this.connections = new RateLimiterMemory({ points: limits.connectionsPer10s, duration: 10 });
    this.messages = new RateLimiterMemory({ points: limits.messagesPerSecond, duration: 1 });
  }

  /** False once `address` has used up its connection attempts. */
  async allowConnection(address: string): Promise<boolean> {
    return this.connections.consume(address).then(() => true, () => false);
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
      log(line);
    } else w.held++;
  };
}
