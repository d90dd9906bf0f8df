// A real redis-server for tests and benches: its own free 127.0.0.1 port, its own temp dir, nothing
// persisted (`--save "" --appendonly no`), stopped by its pid. Never the system's Redis on 6379.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const REDIS_SERVER = process.env.TABFARM_REDIS_SERVER ?? "/usr/bin/redis-server";

export interface RedisServer {
  /** redis://127.0.0.1:PORT */
  url: string;
  port: number;
  pid: number;
  /** Stops the server (SIGTERM, then SIGKILL if it lingers) and removes its temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartRedisOptions {
  /** e.g. "allkeys-lru" to start an evicting Redis (default: Redis's own, noeviction). */
  maxmemoryPolicy?: string;
  /** More `--name value` arguments for redis-server. */
  args?: string[];
}

/** A port the kernel says is free right now (another process may still take it before Redis binds: see retries). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** One PING over a raw socket: true when Redis answers (+PONG, or NOAUTH from one started with --requirepass). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    let reply = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1");
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG") || reply.startsWith("-NOAUTH"));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || exited(child)) return;
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(child.pid, "SIGTERM");
  const timer = setTimeout(() => {
    if (!exited(child) && child.pid !== undefined) process.kill(child.pid, "SIGKILL");
  }, 5000);
  await gone;
  clearTimeout(timer);
}

export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  let lastError = "";
  for (let tries = 0; tries < 5; tries++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "tabfarm-redis-"));
    const args = [
      "--bind", "127.0.0.1",
      "--port", String(port),
      "--dir", dir,
      "--save", "",
      "--appendonly", "no",
      "--daemonize", "no",
      "--loglevel", "warning",
      ...(options.maxmemoryPolicy ? ["--maxmemory-policy", options.maxmemoryPolicy] : []),
      ...(options.args ?? []),
    ];
    const child = spawn(REDIS_SERVER, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (d) => (output += d));
    child.stderr!.on("data", (d) => (output += d));
    const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
    // A test process that dies without calling stop() still ends its Redis.
    const onExit = () => {
      if (child.pid !== undefined && !exited(child)) process.kill(child.pid, "SIGKILL");
    };
    process.once("exit", onExit);
    const cleanup = async () => {
      await stopChild(child);
      process.removeListener("exit", onExit);
      rmSync(dir, { recursive: true, force: true });
    };
    // Bounded: 200 × 50 ms, and it stops early if the server exits (port taken, bad argument).
    for (let i = 0; i < 200 && !exited(child); i++) {
      const failed = await Promise.race([spawnError, sleep(0).then(() => null)]);
      if (failed) {
        await cleanup();
        throw new Error(`cannot start ${REDIS_SERVER}: ${failed.message}`);
      }
      if (await ping(port)) {
        let stopped: Promise<void> | undefined;
        return { url: `redis://127.0.0.1:${port}`, port, pid: child.pid!, stop: () => (stopped ??= cleanup()) };
      }
      await sleep(50);
    }
    lastError = output.trim() || `no PONG on port ${port}`;
    await cleanup();
    if (!/Address already in use/i.test(lastError)) break;
  }
  throw new Error(`redis-server did not start: ${lastError}`);
}
