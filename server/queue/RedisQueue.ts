// The job queue on Redis, for several farm servers (on one or many machines) sharing one queue.
//
// BullMQ does the part that must be atomic across processes: a take is its `moveToActive` (one server
// gets a job, locked under a token we choose), and every end of a lease (done, failed, back to pending)
// is one of its scripts that first checks that lock token. So the lease token IS the BullMQ lock token,
// and a stale or foreign token is refused by BullMQ itself, whichever server it comes to.
// It runs in manual-fetching mode (`new Worker(name, null)` + `getNextJob`): no processor and no lock
// renewal timer (our sessions' heartbeats renew the lock: extend); BullMQ's stalled-job check runs, as
// the net under a take that died half-way.
//
// Expiry: each lease's expiresAt, on the lease clock, is kept with the job; housekeep (any server's)
// ends leases past it. The BullMQ lock lives a margin longer and is renewed by extend: a lease whose
// lock lapsed (Redis's own clock) is over too, whatever the servers' clocks say (housekeep, recoverLeased).
//
// What BullMQ does not know is kept beside it, per job, in a hash of ours (`<prefix>:<name>:tf:job:<id>`):
// the spec, its place in line (seq), attempts counted our way (release refunds one), who failed it last,
// the last error, and the lease's expiry on the lease clock. Order: every job is added with BullMQ
// priority = seq, so BullMQ serves pending jobs in queue order and a job that comes back (put back,
// expired, retried) takes its old place in line, as in SqliteQueue. BullMQ's priority tops out at
// 2,097,151: jobs past that seq share the last priority and are served in add order among themselves,
// a returned one ahead of them (see MAX_PRIORITY).
import { randomBytes, randomUUID } from "node:crypto";
import { Job, Queue, RedisConnection, Worker, type ConnectionOptions } from "bullmq";
import { Redis, type RedisOptions } from "ioredis";
import { caseFoldedName } from "../../protocol/names.js";
import type { JobSpec } from "../../protocol/job.js";
import { RUN_DEFAULTS } from "../runDefaults.js";
import { ChangedJobError, countChanged, noChangedJobs, specDiffers } from "./changedJobs.js";
import type {
  AddOptions,
  AddResult,
  ChangedJobs,
  FailedJob,
  JobError,
  JobQueue,
  JobState,
  Lease,
  QueueCounts,
  QueueOptions,
} from "./JobQueue.js";
import { LEASE_END_REASONS } from "./JobQueue.js";
import { CaseCollisionError } from "./SqliteQueue.js";

/** BullMQ's key prefix for tabfarm's queues: `tabfarm:<queue name>:...`. */
const KEY_PREFIX = "tabfarm";
export const DEFAULT_QUEUE_NAME = "tabfarm";
const QUEUE_NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** BullMQ's priority is stored in a float with a 32-bit counter below it: 2^21 - 1 is its top. */
export const MAX_PRIORITY = 2_097_151;
/** Jobs per round trip in `add` (reads, creates and BullMQ's addBulk each take one per chunk). */
const ADD_CHUNK = 1_000;
/** Jobs a take looks past (held, then put back in place) for one this owner did not fail last. */
const MAX_SKIPPED = 32;
const TOKEN_SEP = "~";
/** The BullMQ job name of every job (BullMQ's name is a label; our spec is in our hash). */
const BULL_JOB_NAME = "job";
const DEFAULTS = {
  leaseTtlMs: RUN_DEFAULTS.leaseTtlMs,
  maxAttempts: RUN_DEFAULTS.maxAttempts,
  connectTimeoutMs: 5_000,
  commandTimeoutMs: 10_000,
};

// Reasons recorded when a lease ends without the session saying why, besides LEASE_END_REASONS.
const REASON_RESTART = "lease lost: server restarted or stopped renewing it";
const REASON_TAKEN_LATE = "taken after its caller had given up waiting for Redis";
const REASON_LOST_BOOKKEEPING = "queued in BullMQ without tabfarm's record of it (removed by hand?)";

export interface RedisQueueOptions extends QueueOptions {
  /** The queue's name (letters, digits, - and _, at most 64); also settable as `?queue=NAME` in the URL. Default "tabfarm". */
  name?: string;
  /** Where connection trouble is told (BullMQ's and ioredis's error events); default: nowhere. */
  log?: (line: string) => void;
  /** How long opening waits for Redis to answer (default 5 000). */
  connectTimeoutMs?: number;
  /** How long any one call waits for Redis before rejecting (default 10 000): a dead Redis never hangs a caller. */
  commandTimeoutMs?: number;
  /**
   * How long a lease's BullMQ lock lives past each take or extend, in real (Redis) time. Default:
   * the lease TTL plus max(TTL, 5 s), so the lease clock decides expiry and the lock is the safety net.
   */
  lockDurationMs?: number;
  /**
   * This machine's wall clock (default Date.now). Unless `now` is given, the lease clock is this clock set
   * to Redis's TIME (the offset measured at open), so servers whose clocks disagree read every lease's
   * expiry on one clock. Tests pass a skewed one.
   */
  wallClock?: () => number;
}

/** Where a `--queue redis://…` URL points; `display` is the URL with any password replaced by ***. */
export interface RedisQueueTarget {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db: number;
  tls: boolean;
  /** From `?queue=NAME`, if given. */
  queueName?: string;
  display: string;
}

/** True when `s` names a Redis queue (redis:// or rediss://) rather than a file. */
export function isRedisQueueUrl(s: string): boolean {
  return /^rediss?:\/\//i.test(s.trim());
}

/**
 * `s` safe to print: the password of its user-info part (`//user:PASSWORD@`, up to the last "@", since a
 * careless URL may hold an unescaped "@" or "/" in it) and any password-like query value become ***.
 */
export function redactRedisUrl(s: string): string {
  let out = String(s).replace(/([?&](?:password|pass|pwd|auth|secret|token)=)[^&#]*/gi, "$1***");
  const at = out.lastIndexOf("@");
  if (at < 0) return out;
  const schemeEnd = out.indexOf("://");
  const start = schemeEnd >= 0 && schemeEnd < at ? schemeEnd + 3 : 0;
  const userinfo = out.slice(start, at);
  const colon = userinfo.indexOf(":");
  // "user:password@": the user stays; a lone "secret@" may be a password (redis://password@host): hidden.
  out = out.slice(0, start) + (colon >= 0 ? userinfo.slice(0, colon + 1) : "") + "***" + out.slice(at);
  return out;
}

export class RedisQueueUrlError extends Error {}

/** Parses `redis://[user:password@]host[:port][/db][?queue=NAME]` (or rediss:// for TLS); throws naming --queue otherwise. */
export function parseRedisQueueUrl(url: string): RedisQueueTarget {
  const display = redactRedisUrl(url);
  const refuse = (why: string): never => {
    throw new RedisQueueUrlError(
      `--queue ${JSON.stringify(display)}: ${why}; expected redis://[user:password@]host:port[/db][?queue=NAME] (rediss:// for TLS)`,
    );
  };
  if (typeof url !== "string" || !isRedisQueueUrl(url)) refuse("not a Redis URL");
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    return refuse("not a valid URL (is the port a number?)");
  }
  const tls = parsed.protocol.toLowerCase() === "rediss:";
  let host = parsed.hostname;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host === "") refuse("no host");
  const port = parsed.port === "" ? 6379 : Number(parsed.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) refuse(`port ${parsed.port} is not 1-65535`);
  const path = parsed.pathname;
  let db = 0;
  if (path !== "" && path !== "/") {
    const m = /^\/(\d{1,5})$/.exec(path);
    if (!m) refuse(`the path ${JSON.stringify(path)} is not a database number (/0, /1, ...)`);
    db = Number(m![1]);
  }
  if (parsed.hash !== "") refuse("a #fragment means nothing here");
  let queueName: string | undefined;
  for (const [key, value] of parsed.searchParams) {
    if (key !== "queue") refuse(`unknown parameter ${JSON.stringify(key)} (only ?queue=NAME)`);
    if (queueName !== undefined) refuse("?queue= given twice");
    queueName = checkQueueName(value, () => refuse(queueNameProblem(value)));
  }
  const username = parsed.username === "" ? undefined : decodeURIComponent(parsed.username);
  const password = parsed.password === "" ? undefined : decodeURIComponent(parsed.password);
  return { host, port, username, password, db, tls, queueName, display };
}

function queueNameProblem(name: string): string {
  return `queue name ${JSON.stringify(name)} must be 1-64 letters, digits, - or _`;
}

function checkQueueName(name: string, refuse: () => never): string {
  if (!QUEUE_NAME.test(name)) refuse();
  return name;
}

/** A Redis queue that cannot be opened or used: says which Redis (password hidden) and why. */
export class RedisQueueError extends Error {}

/**
 * Opens the queue at `url` (redis://…): connects within `connectTimeoutMs`, refuses a Redis that may evict
 * keys (maxmemory-policy other than noeviction) or is older than BullMQ needs, and returns the queue.
 */
export async function openRedisQueue(url: string, options: RedisQueueOptions = {}): Promise<RedisQueue> {
  const target = parseRedisQueueUrl(url);
  if (options.name !== undefined) {
    checkQueueName(options.name, () => {
      throw new RedisQueueUrlError(`--queue ${JSON.stringify(target.display)}: ${queueNameProblem(options.name!)}`);
    });
    if (target.queueName !== undefined && target.queueName !== options.name) {
      throw new RedisQueueUrlError(
        `--queue ${JSON.stringify(target.display)}: names queue ${JSON.stringify(target.queueName)} but ${JSON.stringify(options.name)} was asked for`,
      );
    }
  }
  const name = target.queueName ?? options.name ?? DEFAULT_QUEUE_NAME;
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
  const commandTimeoutMs = options.commandTimeoutMs ?? DEFAULTS.commandTimeoutMs;
  const where = `Redis at ${target.display}`;
  const log = options.log ?? (() => {});

  let everReady = false;
  let clockOffsetMs = 0;
  const redis = new Redis({
    ...connectionOptions(target, connectTimeoutMs),
    lazyConnect: true,
    // Commands fail at once while the connection is down (no queue of calls waiting for a Redis that may
    // never come back), and one that gets no answer fails after commandTimeoutMs.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: commandTimeoutMs,
    // Never reconnect before the first success (a wrong address fails at once, not in a retry loop);
    // after it, keep reconnecting so a Redis restart is ridden out.
    retryStrategy: (times) => (everReady ? Math.min(times * 200, 2_000) : null),
  });
  let lastLogged = "";
  /** Why the first connection failed, as Redis or the socket said it (ioredis's own rejection says only "Connection is closed"). */
  let connectError: Error | undefined;
  redis.on("error", (err: Error) => {
    if (!everReady) connectError ??= err;
    else if (err.message !== lastLogged) log(`queue: ${where}: ${err.message}`);
    lastLogged = err.message;
  });
  try {
    await withTimeout(redis.connect(), connectTimeoutMs, () => `cannot reach ${where} within ${connectTimeoutMs} ms`);
    everReady = true;
    await checkServer(redis, where);
    clockOffsetMs = options.now === undefined ? await offsetToRedisTime(redis, options.wallClock ?? Date.now) : 0;
  } catch (err) {
    redis.disconnect();
    if (err instanceof RedisQueueError) throw err;
    throw new RedisQueueError(`cannot use ${where} (--queue): ${(connectError ?? (err as Error)).message}`);
  }
  return new RedisQueue(redis, target, name, { ...options, connectTimeoutMs, commandTimeoutMs }, clockOffsetMs);
}

/**
 * How far Redis's clock is ahead of `wallClock` (ms; the midpoint of one TIME round trip). Several servers
 * expire each other's leases: with each on its own clock, one whose clock runs a lease TTL ahead would end
 * every live lease of the others at each housekeep.
 */
async function offsetToRedisTime(redis: Redis, wallClock: () => number): Promise<number> {
  const before = wallClock();
  const [seconds, micros] = await redis.time();
  const after = wallClock();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - Math.round((before + after) / 2);
}

function connectionOptions(target: RedisQueueTarget, connectTimeoutMs: number): RedisOptions {
  return {
    host: target.host,
    port: target.port,
    username: target.username,
    password: target.password,
    db: target.db,
    connectTimeout: connectTimeoutMs,
    ...(target.tls ? { tls: { servername: target.host } } : {}),
  };
}

/** Refuses a Redis that would lose jobs (evicting) or that BullMQ cannot run on (too old). */
async function checkServer(redis: Redis, where: string): Promise<void> {
  const server = parseInfo(await redis.info("server"));
  const version = server.redis_version ?? server.valkey_version ?? "";
  if (!versionAtLeast(version, RedisConnection.minimumVersion)) {
    throw new RedisQueueError(
      `${where} runs Redis ${version || "of unknown version"}; the queue (BullMQ) needs ${RedisConnection.minimumVersion} or newer`,
    );
  }
  let policy: string | undefined;
  try {
    const reply = (await redis.config("GET", "maxmemory-policy")) as string[];
    policy = reply[1];
  } catch {
    // CONFIG may be disabled (managed Redis): INFO says it too.
  }
  policy ??= parseInfo(await redis.info("memory")).maxmemory_policy;
  if (policy !== "noeviction") {
    throw new RedisQueueError(
      `${where} has maxmemory-policy ${policy ?? "(unreadable)"}; the queue needs noeviction: an evicting Redis ` +
        `silently deletes queued jobs when memory runs short. Fix: redis-cli config set maxmemory-policy noeviction ` +
        `(and put "maxmemory-policy noeviction" in redis.conf to keep it)`,
    );
  }
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

function versionAtLeast(version: string, minimum: string): boolean {
  const a = version.split(".").map(Number);
  const b = minimum.split(".").map(Number);
  if (a.length === 0 || a.some((n) => !Number.isFinite(n))) return false;
  for (let i = 0; i < b.length; i++) {
    if ((a[i] ?? 0) !== b[i]) return (a[i] ?? 0) > b[i]!;
  }
  return true;
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisQueueError(message())), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// BullMQ refuses job ids that contain ":" (its key separator) or are all digits (its own counter's ids),
// and our tokens use "~": a job id goes to BullMQ as "j" + the id with every other character than
// letters, digits, "_", "." and "-" written as %XX. Reversible, and the same id always maps the same way.
export function toBullId(id: string): string {
  return "j" + id.replace(/[^A-Za-z0-9_.-]/g, (ch) => encodeURIComponent(ch).replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`));
}
export function fromBullId(bullId: string): string {
  return decodeURIComponent(bullId.slice(1));
}

/** Our fields of a job's hash, as read back. */
interface JobRecord {
  state?: string;
  token?: string;
  owner?: string;
  expiresAt?: string;
  attempts?: string;
  seq?: string;
  failedBy?: string;
}

// Creates a job's record unless its id is queued; refuses an id that differs only by case from a queued one.
// KEYS: job hash, folded-ids hash. ARGV: id, folded id, spec, seq. Returns 1 created, 0 known, or the colliding id.
const CREATE_SCRIPT = `
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
local other = redis.call("HGET", KEYS[2], ARGV[2])
if other and other ~= ARGV[1] then return other end
redis.call("HSET", KEYS[1], "id", ARGV[1], "spec", ARGV[3], "seq", ARGV[4], "state", "pending", "attempts", 0)
redis.call("HSET", KEYS[2], ARGV[2], ARGV[1])
return 1`;

// An edited pending job replaces the queued spec as a new job. KEYS: job hash. ARGV: spec. Returns 1 if replaced.
const REPLACE_PENDING_SCRIPT = `
if redis.call("HGET", KEYS[1], "state") ~= "pending" then return 0 end
redis.call("HSET", KEYS[1], "spec", ARGV[1], "attempts", 0, "failedBy", "")
redis.call("HDEL", KEYS[1], "errMsg", "errStack")
return 1`;

// A refused add takes back what it created: only jobs nobody has taken. KEYS: job hash, folded hash. ARGV: folded id.
const UNCREATE_SCRIPT = `
if redis.call("HGET", KEYS[1], "state") ~= "pending" or redis.call("HGET", KEYS[1], "attempts") ~= "0" then return 0 end
redis.call("DEL", KEYS[1])
redis.call("HDEL", KEYS[2], ARGV[1])
return 1`;

// Our record of a lease that BullMQ has just ended, written only if that lease is still the one recorded
// (another server may have ended it and the job been taken again meanwhile).
// KEYS: job hash, leases hash, done-or-failed zset. ARGV: token, new state, failedBy, errMsg, errStack,
// has stack (0/1), attempts delta, BullMQ id. Returns 1 if written.
const END_SCRIPT = `
if redis.call("HGET", KEYS[1], "state") ~= "leased" or redis.call("HGET", KEYS[1], "token") ~= ARGV[1] then return 0 end
redis.call("HSET", KEYS[1], "state", ARGV[2])
redis.call("HDEL", KEYS[1], "expiresAt")
redis.call("HDEL", KEYS[2], ARGV[8])
if ARGV[2] ~= "done" then
  redis.call("HSET", KEYS[1], "failedBy", ARGV[3], "errMsg", ARGV[4])
  if ARGV[6] == "1" then redis.call("HSET", KEYS[1], "errStack", ARGV[5]) else redis.call("HDEL", KEYS[1], "errStack") end
  if ARGV[7] ~= "0" then redis.call("HINCRBY", KEYS[1], "attempts", ARGV[7]) end
end
if ARGV[2] ~= "pending" then redis.call("ZADD", KEYS[3], redis.call("HGET", KEYS[1], "seq"), ARGV[8]) end
return 1`;

// Records a lease BullMQ has just handed over. KEYS: job hash, leases hash. ARGV: lock token, owner (prefixed),
// expiresAt, BullMQ id, may hold (1/0). Returns {"leased", attempts, spec}, {"held"} (the owner failed it last),
// {"missing"} (no record of ours), or {"lapsed", attempts, owner, token} (our record still shows an older lease).
const LEASE_SCRIPT = `
local r = redis.call("HMGET", KEYS[1], "state", "attempts", "failedBy", "owner", "spec", "token")
if not r[1] then return {"missing"} end
if r[1] == "leased" then return {"lapsed", r[2], r[4] or "", r[6] or ""} end
if ARGV[5] == "1" and (r[3] or "") == ARGV[2] and tonumber(r[2]) > 0 then return {"held"} end
local attempts = redis.call("HINCRBY", KEYS[1], "attempts", 1)
redis.call("HSET", KEYS[1], "state", "leased", "token", ARGV[1], "owner", ARGV[2], "expiresAt", ARGV[3])
redis.call("HSET", KEYS[2], ARGV[4], ARGV[2])
return {"leased", attempts, r[5]}`;

interface QueueScripts {
  tfLease(job: string, leases: string, token: string, owner: string, expiresAt: number, bullId: string, mayHold: 0 | 1): Promise<unknown>;
  tfEnd(job: string, leases: string, finished: string, token: string, state: string, failedBy: string, message: string, stack: string, hasStack: 0 | 1, attemptsDelta: number, bullId: string): Promise<number>;
  tfCreate(job: string, folded: string, id: string, foldedId: string, spec: string, seq: number): Promise<number | string>;
  tfReplacePending(job: string, spec: string): Promise<number>;
  tfUncreate(job: string, folded: string, foldedId: string): Promise<number>;
}

export class RedisQueue implements JobQueue {
  readonly name: string;
  readonly leaseTtlMs: number;
  readonly maxAttempts: number;
  /** Where it is (the URL with any password as ***). */
  readonly display: string;
  /** Lease owners ("s1") repeat across servers: each instance prefixes its owners with this random id. */
  readonly instanceId = randomBytes(6).toString("hex");
  private readonly lockMs: number;
  private readonly commandTimeoutMs: number;
  /**
   * The lease clock. The default is the wall clock set to Redis's (see offsetToRedisTime), and not
   * leaseClock (JobQueue.ts): leases here are shared by servers on several machines, and any of them may
   * expire another's lease, so their expiries must be read on one clock that all processes share;
   * leaseClock is per process (its origin is the process's start). A wall-clock step after the open can
   * then expire or prolong leases early or late; the BullMQ lock (timed by Redis itself) bounds how long a
   * dead server's lease can outlive it. Tests pass a fake.
   */
  private readonly now: () => number;
  private readonly queue: Queue;
  private readonly worker: Worker;
  private readonly scripts: QueueScripts;
  private closed = false;
  private closing?: Promise<void>;

  /** Use openRedisQueue: it checks the server before this is built. */
  constructor(private readonly redis: Redis, target: RedisQueueTarget, name: string, options: RedisQueueOptions, private readonly clockOffsetMs = 0) {
    this.name = name;
    this.display = target.display;
    this.leaseTtlMs = options.leaseTtlMs ?? DEFAULTS.leaseTtlMs;
    this.maxAttempts = options.maxAttempts ?? DEFAULTS.maxAttempts;
    const wallClock = options.wallClock ?? Date.now;
    this.now = options.now ?? (() => wallClock() + clockOffsetMs);
    this.commandTimeoutMs = options.commandTimeoutMs ?? DEFAULTS.commandTimeoutMs;
    if (!(this.leaseTtlMs > 0)) throw new RangeError(`leaseTtlMs must be > 0, got ${this.leaseTtlMs}`);
    if (!(this.maxAttempts >= 1)) throw new RangeError(`maxAttempts must be >= 1, got ${this.maxAttempts}`);
    // The lock outlives the lease by a margin: a heartbeat delayed by a busy event loop renews the lock
    // before it lapses, and the lease clock (housekeep) ends leases; the lock ending (Redis's clock) is
    // the net under it: a lease whose lock is gone is over, whatever any server's clock says.
    this.lockMs = options.lockDurationMs ?? this.leaseTtlMs + Math.max(this.leaseTtlMs, 5_000);
    const log = options.log ?? (() => {});
    let lastLogged = "";
    const logError = (who: string) => (err: Error) => {
      const line = `queue: Redis at ${this.display} (${who}): ${err.message}`;
      if (line !== lastLogged) log(line); // a Redis that stays down says so once, not once per reconnect
      lastLogged = line;
    };

    redis.defineCommand("tfCreate", { numberOfKeys: 2, lua: CREATE_SCRIPT });
    redis.defineCommand("tfReplacePending", { numberOfKeys: 1, lua: REPLACE_PENDING_SCRIPT });
    redis.defineCommand("tfUncreate", { numberOfKeys: 2, lua: UNCREATE_SCRIPT });
    redis.defineCommand("tfEnd", { numberOfKeys: 3, lua: END_SCRIPT });
    redis.defineCommand("tfLease", { numberOfKeys: 2, lua: LEASE_SCRIPT });
    this.scripts = redis as unknown as QueueScripts;

    // The Queue shares our connection (bounded: no offline queue, command timeout). The Worker needs its
    // own (BullMQ requires maxRetriesPerRequest: null there); every call through it is bounded by `bounded`.
    this.queue = new Queue(name, { connection: redis, prefix: KEY_PREFIX });
    this.queue.on("error", logError("queue"));
    this.worker = new Worker(name, null, {
      connection: { ...connectionOptions(target, options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs), maxRetriesPerRequest: null } as ConnectionOptions,
      prefix: KEY_PREFIX,
      autorun: false,
      lockDuration: this.lockMs,
      skipLockRenewal: true, // our sessions' heartbeats renew (extend)
      // BullMQ's stalled-job check puts back a job whose lock lapsed: one a server took but died before
      // recording the lease (no record of ours would ever end it). Leases we recorded are ended first by
      // housekeep / recoverLeased; one the check puts back is counted as expired when it is next taken.
      // The attempts are ours to count, so BullMQ's own stall limit is out of reach.
      stalledInterval: this.lockMs,
      maxStalledCount: 1_000_000_000,
    });
    this.worker.on("error", logError("worker"));
    void this.worker.startStalledCheckTimer();
  }

  private key(part: string): string {
    return `${KEY_PREFIX}:${this.name}:tf:${part}`;
  }
  private jobKey(bullId: string): string {
    return this.key(`job:${bullId}`);
  }
  private lockKey(bullId: string): string {
    return `${this.queue.toKey(bullId)}:lock`;
  }
  private ownerKey(owner: string): string {
    return `${this.instanceId}/${owner}`;
  }
  /** A BullMQ Job to call its lease-ending scripts on: built locally, no round trip. */
  private handle(bullId: string): Job {
    return new Job(this.queue, BULL_JOB_NAME, null, { attempts: 1, removeOnComplete: false, removeOnFail: false }, bullId);
  }

  /** Runs one public call, bounded in time, with errors that name the Redis and the call. */
  private async bounded<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new RedisQueueError(`Redis queue ${JSON.stringify(this.name)} at ${this.display} is closed (${what})`);
    try {
      return await withTimeout(
        fn(),
        this.commandTimeoutMs,
        () => `Redis at ${this.display}: ${what} got no answer within ${this.commandTimeoutMs} ms (is Redis up?)`,
      );
    } catch (err) {
      if (err instanceof RedisQueueError || err instanceof ChangedJobError || err instanceof CaseCollisionError || err instanceof TypeError) throw err;
      throw new RedisQueueError(`Redis at ${this.display}: ${what} failed: ${(err as Error).message}`);
    }
  }

  async add(jobs: Iterable<JobSpec> | AsyncIterable<JobSpec>, options: AddOptions = {}): Promise<AddResult> {
    const changed = noChangedJobs();
    let added = 0;
    let seen = 0;
    /** Specs of this call's jobs by id (a later duplicate in the same call compares against the first). */
    const inCall = new Map<string, string>();
    const foldedInCall = new Map<string, string>();
    /** What this call created, so a refused add can take it back. */
    const created: string[] = [];
    let chunk: JobSpec[] = [];
    const flush = async () => {
      const batch = chunk;
      chunk = [];
      added += await this.bounded("add", () => this.addChunk(batch, options, changed, inCall, foldedInCall, created));
    };
    try {
      const push = async (job: JobSpec) => {
        if (typeof job?.id !== "string" || job.id === "") throw new TypeError(`job #${seen} has no string id`);
        seen++;
        chunk.push(job);
        if (chunk.length >= ADD_CHUNK) await flush();
      };
      if (Symbol.asyncIterator in jobs) for await (const job of jobs) await push(job);
      else for (const job of jobs) await push(job);
      if (chunk.length > 0) await flush();
    } catch (err) {
      // refuseChanged: the whole add is refused, so what its earlier chunks created goes too.
      if (err instanceof ChangedJobError) await this.bounded("add (taking back a refused add)", () => this.uncreate(created));
      throw err;
    }
    return { added, duplicates: seen - added, ...(changed.count > 0 ? { changed } : {}) };
  }

  private async addChunk(
    batch: JobSpec[],
    { replacePending, refuseChanged }: AddOptions,
    changed: ChangedJobs,
    inCall: Map<string, string>,
    foldedInCall: Map<string, string>,
    created: string[],
  ): Promise<number> {
    // One round trip reads what is queued under these ids (our record, and whether BullMQ has the job).
    const read = this.redis.pipeline();
    for (const job of batch) {
      const bullId = toBullId(job.id);
      read.hmget(this.jobKey(bullId), "spec", "state");
      read.hget(this.key("folded"), caseFoldedName(job.id));
      read.exists(this.queue.toKey(bullId));
    }
    const replies = await execPipeline(read);
    const fresh: { job: JobSpec; spec: string }[] = [];
    const missingInBull: string[] = [];
    const replace: { job: JobSpec; spec: string }[] = [];
    batch.forEach((job, i) => {
      const [queuedSpec, queuedState] = replies[i * 3] as [string | null, string | null];
      const folded = caseFoldedName(job.id);
      const otherId = (replies[i * 3 + 1] as string | null) ?? foldedInCall.get(folded);
      if (otherId !== undefined && otherId !== null && otherId !== job.id) throw new CaseCollisionError(job.id, otherId);
      const spec = JSON.stringify(job);
      const earlier = inCall.get(job.id);
      if (queuedSpec === null && earlier === undefined) {
        fresh.push({ job, spec });
        inCall.set(job.id, spec);
        foldedInCall.set(folded, job.id);
        return;
      }
      if (queuedSpec !== null && replies[i * 3 + 2] === 0 && queuedState === "pending") missingInBull.push(job.id);
      // Known id: an edited job is reported, and replaced only while nobody has started it.
      const state = (queuedSpec === null ? "pending" : queuedState) as JobState;
      if (!specDiffers(job, queuedSpec ?? earlier!)) return;
      if (refuseChanged) throw new ChangedJobError(job.id, state);
      if (replacePending && state === "pending" && queuedSpec !== null) replace.push({ job, spec });
      else countChanged(changed, job.id, state, false);
    });

    for (const { job, spec } of replace) {
      const done = (await this.scripts.tfReplacePending(this.jobKey(toBullId(job.id)), spec)) === 1;
      countChanged(changed, job.id, done ? "pending" : ((await this.stateOf(job.id)) ?? "pending"), done);
    }

    let addedHere = 0;
    const toBull: { id: string; seq: number }[] = [];
    if (fresh.length > 0) {
      const last = await this.redis.incrby(this.key("seq"), fresh.length);
      const first = last - fresh.length + 1;
      const create = this.redis.pipeline();
      fresh.forEach(({ job, spec }, i) => {
        (create as unknown as QueueScripts).tfCreate(
          this.jobKey(toBullId(job.id)), this.key("folded"), job.id, caseFoldedName(job.id), spec, first + i,
        );
      });
      const results = await execPipeline(create);
      results.forEach((result, i) => {
        const { job } = fresh[i]!;
        if (result === 1) {
          addedHere++;
          created.push(job.id);
          toBull.push({ id: job.id, seq: first + i });
        } else if (typeof result === "string") {
          throw new CaseCollisionError(job.id, result); // another server added a case twin just now
        } else {
          // 0: another server added the same id just now: a duplicate. That server may die before its
          // BullMQ add, and nobody would ever serve the job: it goes to BullMQ from here too (idempotent).
          missingInBull.push(job.id);
        }
      });
    }
    // A job recorded by us but missing in BullMQ (a crash between the two writes) is added to BullMQ again.
    await this.restoreInBull(missingInBull);
    await this.addToBull(toBull);
    return addedHere;
  }

  /** Adds these jobs (ids with records of ours) to BullMQ again, at their seq. */
  private async restoreInBull(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const seqs = await Promise.all(ids.map((id) => this.redis.hget(this.jobKey(toBullId(id)), "seq")));
    // No record any more (a refused add took it back meanwhile): nothing to restore.
    await this.addToBull(ids.flatMap((id, i) => (seqs[i] === null ? [] : [{ id, seq: Number(seqs[i]) }])));
  }

  /** One BullMQ addBulk (one round trip) for a chunk of jobs. */
  private async addToBull(toBull: { id: string; seq: number }[]): Promise<void> {
    if (toBull.length > 0) {
      await this.queue.addBulk(
        toBull.map(({ id, seq }) => ({
          name: BULL_JOB_NAME,
          data: { id },
          opts: {
            jobId: toBullId(id),
            priority: Math.min(seq, MAX_PRIORITY),
            // Kept: an add must find a finished job's id to skip it (adds are idempotent).
            removeOnComplete: false,
            removeOnFail: false,
            attempts: 1,
          },
        })),
      );
    }
  }

  /** Takes back jobs a refused add created, if nobody took them meanwhile. */
  private async uncreate(ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += ADD_CHUNK) {
      const part = ids.slice(i, i + ADD_CHUNK);
      await Promise.all(part.map((id) => this.queue.remove(toBullId(id))));
      const pipe = this.redis.pipeline();
      for (const id of part) (pipe as unknown as QueueScripts).tfUncreate(this.jobKey(toBullId(id)), this.key("folded"), caseFoldedName(id));
      await execPipeline(pipe);
    }
  }

  take(owner: string): Promise<Lease | null> {
    let taking: Promise<Lease | null> | undefined;
    return this.bounded("take", () => (taking = this.takeNow(owner))).catch((err: unknown) => {
      // Given up on (Redis stalled past the timeout), the take still runs and may lease a job when Redis
      // answers: nobody would run it, and its expiry would count an attempt (fail it, at --max-attempts 1)
      // that never happened. It goes back uncounted.
      void taking?.then((late) => late && this.release(late.token, { message: REASON_TAKEN_LATE })).catch(() => {});
      throw err;
    });
  }

  private async takeNow(owner: string): Promise<Lease | null> {
    const held: { bullId: string; lockToken: string }[] = [];
    try {
      for (;;) {
        const lockToken = `${this.instanceId}.${randomUUID()}`;
        const job = await this.worker.getNextJob(lockToken, { block: false });
        if (!job) break;
        // A retry prefers another owner: a job this owner failed last is held while looking further.
        const lease = await this.lease(job.id!, lockToken, owner, held.length < MAX_SKIPPED);
        if (lease === "held") held.push({ bullId: job.id!, lockToken });
        else if (lease !== "gone") return lease;
      }
      // Only jobs this owner failed are left: it gets the first of them rather than nothing.
      const first = held.shift();
      return first === undefined ? null : ((await this.lease(first.bullId, first.lockToken, owner, false)) as Lease);
    } finally {
      // Held jobs go back to their place in line (priority = seq), uncounted (BullMQ's lock is all they had).
      for (const { bullId, lockToken } of held) await this.handle(bullId).moveToWait(lockToken);
    }
  }

  /**
   * Records the lease of a job BullMQ has just handed over under `lockToken` (LEASE_SCRIPT), or says it is
   * "held" (this owner failed it last and `mayHold`) or "gone" (failed instead: see below).
   */
  private async lease(bullId: string, lockToken: string, owner: string, mayHold: boolean): Promise<Lease | "held" | "gone"> {
    const expiresAt = this.now() + this.leaseTtlMs;
    for (;;) {
      const reply = (await this.scripts.tfLease(
        this.jobKey(bullId), this.key("leases"), lockToken, this.ownerKey(owner), expiresAt, bullId, mayHold ? 1 : 0,
      )) as [string, ...(string | number)[]];
      switch (reply[0]) {
        case "leased":
          // expiresAt on this machine's clock, as the caller compares it (LeaseWatch).
          return { job: JSON.parse(reply[2] as string) as JobSpec, token: `${bullId}${TOKEN_SEP}${lockToken}`, owner, expiresAt: expiresAt - this.clockOffsetMs, attempt: Number(reply[1]) };
        case "held":
          return "held";
        case "missing":
          await this.handle(bullId).moveToFailed(new Error(REASON_LOST_BOOKKEEPING), lockToken, false);
          return "gone";
        case "lapsed": {
          // Its last lease ended without anyone ending it (its lock lapsed and something, e.g. BullMQ's
          // stalled-job check run by another tool, put it back): an expired attempt, counted as such.
          const [, attempts, lastOwner, lastToken] = reply as [string, string, string, string];
          const exhausted = Number(attempts) >= this.maxAttempts;
          if (exhausted) await this.handle(bullId).moveToFailed(new Error(LEASE_END_REASONS.expired), lockToken, false);
          await this.markEnded(bullId, lastToken, exhausted ? "failed" : "pending", { message: LEASE_END_REASONS.expired }, lastOwner, 0);
          if (exhausted) return "gone";
          continue; // now pending in our record too: lease it (or hold it)
        }
        default:
          throw new Error(`unexpected reply from the lease script: ${JSON.stringify(reply)}`);
      }
    }
  }

  extend(token: string): Promise<boolean> {
    return this.bounded("extend", async () => {
      const parts = splitToken(token);
      if (!parts) return this.counted(false);
      const { bullId, lockToken } = parts;
      const extended = (await this.handle(bullId).extendLock(lockToken, this.lockMs)) === 1;
      if (extended) await this.redis.hset(this.jobKey(bullId), "expiresAt", this.now() + this.leaseTtlMs);
      return this.counted(extended);
    });
  }

  isCurrent(token: string): Promise<boolean> {
    return this.bounded("isCurrent", async () => {
      const parts = splitToken(token);
      if (!parts) return false;
      const { bullId, lockToken } = parts;
      const [[state, current, expiresAt], lock] = (await execPipeline(
        this.redis.pipeline().hmget(this.jobKey(bullId), "state", "token", "expiresAt").get(this.lockKey(bullId)),
      )) as [[string | null, string | null, string | null], string | null];
      return state === "leased" && current === lockToken && lock === lockToken && Number(expiresAt) > this.now();
    });
  }

  complete(token: string): Promise<boolean> {
    return this.bounded("complete", async () => {
      const parts = splitToken(token);
      if (!parts) return this.counted(false);
      const { bullId, lockToken } = parts;
      if (!(await this.fenced(() => this.handle(bullId).moveToCompleted(null, lockToken, false)))) return this.counted(false);
      await this.markEnded(bullId, lockToken, "done", { message: "" }, "", 0);
      return true;
    });
  }

  putBack(token: string, error?: JobError): Promise<boolean> {
    return this.bounded("putBack", async () => {
      const parts = splitToken(token);
      return this.counted(parts !== null && (await this.endLease(parts.bullId, parts.lockToken, "counted", error ?? { message: LEASE_END_REASONS.putBack })));
    });
  }

  release(token: string, error?: JobError): Promise<boolean> {
    return this.bounded("release", async () => {
      const parts = splitToken(token);
      return this.counted(parts !== null && (await this.endLease(parts.bullId, parts.lockToken, "released", error ?? { message: LEASE_END_REASONS.released })));
    });
  }

  releaseOwner(owner: string, error?: JobError): Promise<number> {
    return this.bounded("releaseOwner", async () => {
      const ownerKey = this.ownerKey(owner);
      const leases = await this.redis.hgetall(this.key("leases"));
      const mine = Object.keys(leases).filter((bullId) => leases[bullId] === ownerKey);
      return this.endStoredLeases(mine, error ?? { message: `${LEASE_END_REASONS.ownerGone}: ${owner}` });
    });
  }

  housekeep(): Promise<number> {
    return this.bounded("housekeep", () => this.endLapsedLeases({ message: LEASE_END_REASONS.expired }));
  }

  /**
   * At a server's start. Other servers share this queue and their leases are live, so this does not void
   * every lease as SqliteQueue does: it ends those that are over, by the lease clock or because their
   * BullMQ lock lapsed (their server stopped renewing them). A server that restarts gets its old jobs back
   * here once their leases run out; the attempt that was running stays counted.
   */
  recoverLeased(): Promise<number> {
    return this.bounded("recoverLeased", () => this.endLapsedLeases({ message: REASON_RESTART }));
  }

  /** Every lease (any server's) that expired on the lease clock or whose lock is gone: back, or failed. */
  private async endLapsedLeases(reason: JobError): Promise<number> {
    const leased = Object.keys(await this.redis.hgetall(this.key("leases")));
    if (leased.length === 0) return 0;
    const pipe = this.redis.pipeline();
    for (const bullId of leased) pipe.hget(this.jobKey(bullId), "expiresAt").exists(this.lockKey(bullId));
    const replies = await execPipeline(pipe);
    const now = this.now();
    const lapsed = leased.filter((_, i) => Number(replies[2 * i]) <= now || replies[2 * i + 1] === 0);
    return this.endStoredLeases(lapsed, reason);
  }

  /** Ends these jobs' current leases with the tokens stored for them (counted). Returns how many ended. */
  private async endStoredLeases(bullIds: string[], reason: JobError): Promise<number> {
    let ended = 0;
    for (const bullId of bullIds) {
      const record = (await this.redis.hgetall(this.jobKey(bullId))) as JobRecord;
      if (record.state !== "leased" || !record.token) continue;
      // A lapsed lock is set again under the same token (only if no lock is there: NX), so BullMQ's fenced
      // scripts can end the lease; if the job was taken again meanwhile its new lock stays and this fails.
      await this.redis.set(this.lockKey(bullId), record.token, "PX", this.lockMs, "NX");
      if (await this.endLease(bullId, record.token, "counted", reason)) ended++;
    }
    return ended;
  }

  /**
   * Ends the lease `lockToken` of a job: back to pending, or to failed when counted and its attempts are
   * used up. BullMQ's script checks the lock token first, so a stale token changes nothing (false).
   */
  private async endLease(bullId: string, lockToken: string, mode: "counted" | "released", error: JobError): Promise<boolean> {
    const record = (await this.redis.hgetall(this.jobKey(bullId))) as JobRecord;
    if (record.state !== "leased" || record.token !== lockToken) return false;
    if (await this.settledInBull(bullId, record, error)) return false;
    const attempts = Number(record.attempts);
    const fail = mode === "counted" && attempts >= this.maxAttempts;
    const handle = this.handle(bullId);
    if (!fail) {
      // Back to pending: our record first, while BullMQ still holds the job locked. The other way round,
      // another server's take could get it from BullMQ before our record says pending, and count this
      // lease as one that lapsed (a release then burns an attempt, and may fail the job). A death between
      // the two leaves the job locked in BullMQ until the lock lapses; its stalled check puts it back.
      const ended = await this.markEnded(bullId, lockToken, "pending", error, mode === "released" ? "" : (record.owner ?? ""), mode === "released" ? -1 : 0);
      if (ended) await this.fenced(() => handle.moveToWait(lockToken));
      return ended;
    }
    const moved = await this.fenced(() => handle.moveToFailed(Object.assign(new Error(error.message), { stack: error.stack }), lockToken, false));
    if (!moved) return false;
    await this.markEnded(bullId, lockToken, "failed", error, record.owner ?? "", 0);
    return true;
  }

  /**
   * A lease BullMQ already ended (completed, or failed) whose end our record lacks: a server died or timed
   * out between the two writes. Put back, the job would be pending for us and never served by BullMQ again
   * (left leased, counted as leased for ever): the run would never end. Records BullMQ's outcome; true if so.
   */
  private async settledInBull(bullId: string, record: JobRecord, error: JobError): Promise<boolean> {
    const inBull = await this.queue.getJobState(bullId);
    if (inBull === "completed") {
      await this.markEnded(bullId, record.token!, "done", { message: "" }, "", 0);
      return true;
    }
    if (inBull === "failed") {
      const failedReason = (await Job.fromId(this.queue, bullId))?.failedReason;
      await this.markEnded(bullId, record.token!, "failed", { message: failedReason || error.message }, record.owner ?? "", 0);
      return true;
    }
    return false;
  }

  /** Our record of the end of the lease `lockToken` (END_SCRIPT); false if that lease is no longer the one recorded. */
  private async markEnded(bullId: string, lockToken: string, state: "pending" | "failed" | "done", error: JobError, failedBy: string, attemptsDelta: number): Promise<boolean> {
    return 1 === await this.scripts.tfEnd(
      this.jobKey(bullId), this.key("leases"), this.key(state === "failed" ? "failed" : "done"),
      lockToken, state, failedBy, error.message, error.stack ?? "", error.stack === undefined ? 0 : 1, attemptsDelta, bullId,
    );
  }

  async retryFailed(ids?: readonly string[]): Promise<number> {
    const bullIds = ids === undefined ? await this.bounded("retryFailed", () => this.redis.zrange(this.key("failed"), 0, -1)) : [...new Set(ids)].map(toBullId);
    let retried = 0;
    // Each job within the time limit, not all of them: 100,000 failed jobs take longer than one call may.
    for (const bullId of bullIds) {
      const moved = await this.bounded("retryFailed", async () => {
        if ((await this.redis.hget(this.jobKey(bullId), "state")) !== "failed") return false;
        // BullMQ's retry moves it only if it is in its failed set (atomic): two servers retrying at once retry it once.
        if (!(await this.fenced(() => this.handle(bullId).retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true })))) return false;
        await execPipeline(
          this.redis
            .multi()
            .hset(this.jobKey(bullId), "state", "pending", "attempts", 0, "failedBy", "")
            .hdel(this.jobKey(bullId), "errMsg", "errStack")
            .zrem(this.key("failed"), bullId),
        );
        return true;
      });
      if (moved) retried++;
    }
    return retried;
  }

  checkWritable(): Promise<void> {
    // A real write, refused by a read-only replica (READONLY) or a Redis out of memory (OOM).
    return this.bounded("checkWritable", async () => void (await this.redis.incr(this.key("write-probes"))));
  }

  counts(): Promise<QueueCounts> {
    return this.bounded("counts", async () => {
      const [c, stale] = await Promise.all([
        this.queue.getJobCounts("prioritized", "wait", "delayed", "active", "completed", "failed"),
        this.redis.get(this.key("stale-rejections")),
      ]);
      const n = (k: string) => c[k] ?? 0;
      const counts = {
        pending: n("prioritized") + n("wait") + n("delayed"),
        leased: n("active"),
        done: n("completed"),
        failed: n("failed"),
        total: 0,
        staleRejections: Number(stale ?? 0),
      };
      counts.total = counts.pending + counts.leased + counts.done + counts.failed;
      return counts;
    });
  }

  failures(limit?: number): Promise<FailedJob[]> {
    return this.bounded("failures", async () => {
      if (limit !== undefined && limit <= 0) return [];
      const bullIds = await this.redis.zrange(this.key("failed"), 0, limit === undefined ? -1 : limit - 1);
      if (bullIds.length === 0) return [];
      const pipe = this.redis.pipeline();
      for (const bullId of bullIds) pipe.hmget(this.jobKey(bullId), "id", "attempts", "errMsg", "errStack");
      return ((await execPipeline(pipe)) as (string | null)[][]).map(([id, attempts, message, stack]) => ({
        id: id!,
        attempts: Number(attempts),
        error: message === null ? null : { message: message!, ...(stack === null ? {} : { stack: stack! }) },
      }));
    });
  }

  state(id: string): Promise<JobState | null> {
    return this.bounded("state", () => this.stateOf(id));
  }

  private async stateOf(id: string): Promise<JobState | null> {
    return ((await this.redis.hget(this.jobKey(toBullId(id)), "state")) as JobState | null) ?? null;
  }

  /**
   * Every done job with its spec as queued (JSON text), in queue order, streamed a page at a time
   * (like SqliteQueue.doneJobs, for verify and shard ledgers); jobs finished while it runs may be included.
   */
  async *doneJobs(pageSize = 1_000): AsyncIterableIterator<{ id: string; spec: string }> {
    let after = "-inf";
    for (;;) {
      const page = await this.bounded("doneJobs", () => this.redis.zrangebyscore(this.key("done"), after, "+inf", "WITHSCORES", "LIMIT", 0, pageSize));
      if (page.length === 0) return;
      const bullIds = page.filter((_, i) => i % 2 === 0);
      const pipe = this.redis.pipeline();
      for (const bullId of bullIds) pipe.hmget(this.jobKey(bullId), "id", "spec");
      const rows = (await this.bounded("doneJobs", () => execPipeline(pipe))) as [string | null, string | null][];
      for (const [id, spec] of rows) if (id !== null && spec !== null) yield { id, spec };
      after = `(${page[page.length - 1]}`;
    }
  }

  /**
   * A setting every server of the run must share (the run's seed): the first server's `proposed` value is
   * kept; every later call gets that one back, whatever it proposed.
   */
  agree(setting: string, proposed: string): Promise<string> {
    return this.bounded(`agree on ${setting}`, async () => {
      const key = this.key(`setting:${setting}`);
      await this.redis.set(key, proposed, "NX");
      return (await this.redis.get(key)) ?? proposed;
    });
  }

  /** Closes this instance's connections (BullMQ's and ours); other instances and servers are untouched. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= (async () => {
      // BullMQ's close waits for its connections; bounded, so a dead Redis does not hold a shutdown.
      await withTimeout(
        Promise.allSettled([this.worker.close(true), this.queue.close()]),
        this.commandTimeoutMs,
        () => "close timed out",
      ).catch(() => this.worker.disconnect());
      this.redis.disconnect();
    })();
    return this.closing;
  }

  /** A token call that matched no current lease changed nothing; count it so fencing problems are visible. */
  private async counted(matched: boolean): Promise<boolean> {
    if (!matched) await this.redis.incr(this.key("stale-rejections"));
    return matched;
  }

  /** Runs a BullMQ lease script: false when it refused for the lock or the job's state (the token is not current). */
  private async fenced(fn: () => Promise<unknown>): Promise<boolean> {
    try {
      await fn();
      return true;
    } catch (err) {
      // BullMQ's codes: -1 no such job, -2 no lock, -3 not in that state, -6 the lock is another token's.
      if ([-1, -2, -3, -6].includes((err as { code?: number }).code ?? 0)) return false;
      throw err;
    }
  }
}

function splitToken(token: string): { bullId: string; lockToken: string } | null {
  if (typeof token !== "string") return null;
  const cut = token.indexOf(TOKEN_SEP);
  if (cut <= 1 || token[0] !== "j" || cut === token.length - 1) return null;
  return { bullId: token.slice(0, cut), lockToken: token.slice(cut + 1) };
}

/** Runs a pipeline or multi; throws the first command error, else returns the replies. */
async function execPipeline(pipe: { exec(): Promise<[Error | null, unknown][] | null> }): Promise<unknown[]> {
  const results = await pipe.exec();
  if (results === null) throw new Error("transaction aborted");
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}
