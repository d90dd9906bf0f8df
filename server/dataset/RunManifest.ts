// manifest.json at the top of a dataset: what a reader needs to use it without the command that made
// it — the layer declarations of every layer any run asked for, the class table (label → class id of
// the class layer and frames' `instances`), and one entry per run: its options, the browsers and WebGL
// renderers that rendered, start, end and counts. tabfarm.json stays the marker that a folder is a
// dataset; this file is its history and is never lost: a resumed run reads it and appends a run.
//
// Written whole and atomically (writeSmallFile): at the start of a run, soon after the class table
// grows or a new browser joins (at most one write a second), and at the end.
import fs from "node:fs";
import path from "node:path";
import { LAYER_NAMES, LAYERS, MAX_ID, type LayerDeclaration, type LayerName } from "../../protocol/layers.js";
import type { BrowserInfo } from "../../protocol/events.js";
import { ClassTable, type ClassEntry } from "../capture/ClassTable.js";
import { DatasetOpenError, describeFsError, RUN_MANIFEST_FILE } from "./openDataset.js";
import { FRAMES_INDEX } from "./DatasetWriter.js";
import { readSmallFile, writeSmallFile } from "./smallFiles.js";
import { frameSeed, isFrameSeed, isRunSeed, randomRunSeed, RUN_SEED_MAX } from "./seeds.js";
import { DEFAULT_FRAMES_PER_JOB, MAX_TEMPLATE_FRAMES, type TemplateSplit } from "../jobs/templateJobs.js";
import { LIMITS } from "../../protocol/grab.js";
import { readFrameLines } from "./readDataset.js";
import { labelProblem, shortJson } from "../../protocol/instances.js";
import type { FrameRecord } from "./FrameRecord.js";

export { RUN_MANIFEST_FILE } from "./openDataset.js";
const FORMAT = "tabfarm-manifest";
const VERSION = 1;
/** 65,535 classes with long labels and thousands of runs fit; a bigger file is not ours. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
/** Distinct browser/renderer pairs kept per run: tabs are peers, and a manifest must stay small. */
const MAX_BROWSERS_PER_RUN = 32;
/** Most template runs of different --frames a dataset records (each is a cut its jobs keep). */
const MAX_TEMPLATE_CUTS = 10_000;
/** At most one coalesced write per this many ms. */
const WRITE_INTERVAL_MS = 1000;

export type LayerDescription = Omit<LayerDeclaration, "name">;

export interface BrowserEntry {
  /** The browser's product token from its user agent, e.g. "HeadlessChrome/143.0.7499.4". */
  browser: string;
  /** The WebGL renderer string (UNMASKED_RENDERER_WEBGL). */
  renderer: string;
}

/** The dataset's totals when a run ended. */
export interface RunCounts {
  jobs_total: number;
  jobs_done: number;
  jobs_failed: number;
  /** Lines in frames.jsonl. */
  frames: number;
}

export interface RunEntry {
  started: string;
  /** Absent while the run is running (or when it was killed). */
  ended?: string;
  /** The run's options as given (no secrets: see recordableOptions; a value over 16 KiB of JSON by its size: runOptions). */
  options: Record<string, unknown>;
  browsers: BrowserEntry[];
  counts?: RunCounts;
}

export interface RunManifestData {
  format: typeof FORMAT;
  version: number;
  /** tabfarm's version (package.json) of the last run that wrote the file. */
  tabfarm: string;
  created: string;
  updated: string;
  layers: Partial<Record<LayerName, LayerDescription>>;
  classes: ClassEntry[];
  /**
   * The dataset's seed: every frame's seed derives from it (server/dispatch/randomizeFrame.ts). Kept
   * across resumes, so a job rendered again draws what its first attempt drew. Absent in manifests
   * written before seeds.
   */
  seed?: number;
  /** How --template runs cut the template's frames into jobs (a resume cuts them the same way). */
  template?: TemplateEntry;
  runs: RunEntry[];
}

export interface TemplateEntry {
  frames_per_job: number;
  /** The --frames of every template run, ascending: jobs end there too (templateJobs' cuts). */
  frames: number[];
}

/** A template run's request: --frames, and --frames-per-job when given (absent: the dataset's cut, else the default). */
export interface TemplateRequest {
  frames: number;
  framesPerJob?: number;
}

/** Option names whose values are never written to disk. */
const SECRET_OPTION = /token|secret|password|credential/i;

/**
 * The run's options as JSON for the manifest: secrets (the access token) left out, and values that are
 * not data (functions, the jobs stream, signals) too.
 */
export function recordableOptions(options: object): Record<string, unknown> {
  const recorded: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(options)) {
    if (SECRET_OPTION.test(name) || value === undefined) continue;
    const json = toJsonData(value);
    if (json !== undefined) recorded[name] = json;
  }
  return recorded;
}

/**
 * A URL's password as *** (`scheme://user:PASSWORD@host`, as a --queue redis:// URL may hold; a lone
 * `scheme://SECRET@host` too, since Redis URLs put a bare password there). Up to the last "@": a careless
 * password holds one.
 */
const URL_USERINFO = /(\b[a-z][a-z0-9+.-]*:\/\/)(\S*)@/gi;
/** A value that is one URL: its password may hold spaces too (a URL parser takes them), so up to the last "@" whatever it holds. */
const WHOLE_URL_USERINFO = /^(\s*[a-z][a-z0-9+.-]*:\/\/)([^]*)@/i;
const hidePassword = (_: string, scheme: string, userinfo: string) => `${scheme}${userinfo.includes(":") ? userinfo.slice(0, userinfo.indexOf(":") + 1) : ""}***@`;
const withoutUrlPasswords = (text: string) =>
  WHOLE_URL_USERINFO.test(text) ? text.replace(WHOLE_URL_USERINFO, hidePassword) : text.replace(URL_USERINFO, hidePassword);

/** Plain data as JSON values; undefined for anything else (or when it holds secrets' names only). */
function toJsonData(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return withoutUrlPasswords(value);
  if (value === null || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  if (depth > 8 || typeof value !== "object") return undefined;
  if (Array.isArray(value)) return value.map((item) => toJsonData(item, depth + 1) ?? null);
  if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return undefined;
  const out: Record<string, unknown> = {};
  for (const [name, item] of Object.entries(value)) {
    if (SECRET_OPTION.test(name)) continue;
    const json = toJsonData(item, depth + 1);
    if (json !== undefined) out[name] = json;
  }
  return out;
}

/**
 * Largest option value (as JSON) a run's entry records as given. manifest.json keeps every run's options
 * and must stay under MAX_MANIFEST_BYTES: a bigger value (a class table of thousands of labels, whose
 * entries are the manifest's `classes` anyway; a programmatic scene) is recorded by its size.
 */
const MAX_RECORDED_OPTION_BYTES = 16 * 1024;

/** A run's options as its manifest entry records them: recordableOptions, each value over MAX_RECORDED_OPTION_BYTES by its size. */
function runOptions(options: object): Record<string, unknown> {
  const recorded = recordableOptions(options);
  for (const [name, value] of Object.entries(recorded)) {
    const bytes = Buffer.byteLength(JSON.stringify(value));
    if (bytes > MAX_RECORDED_OPTION_BYTES) recorded[name] = { omitted: `${bytes} bytes of JSON`, ...(Array.isArray(value) ? { items: value.length } : {}) };
  }
  return recorded;
}

let tabfarmVersion: string | undefined;
/** package.json's version, read once. */
function ownVersion(): string {
  if (tabfarmVersion === undefined) {
    let version: unknown;
    try {
      version = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, "../../package.json"), "utf8")).version;
    } catch {}
    tabfarmVersion = typeof version === "string" ? version : "unknown";
  }
  return tabfarmVersion;
}

/** "HeadlessChrome/143.0.7499.4" from a user agent; the user agent itself when it names no known browser. */
export function browserOf(userAgent: string): string {
  const products = [...userAgent.matchAll(/\b(HeadlessChrome|Chromium|Chrome|Firefox|Edg|Version)\/[\d.]+/g)].map((m) => m[0]);
  return products.find((p) => !p.startsWith("Version")) ?? (userAgent || "unknown");
}

// ---------------------------------------------------------------------------------------------
// The class table as options give it (--classes) and as the manifest stores it

/** A class table problem; the message names where (a file and field, or the option). */
export class ClassTableError extends Error {}

/**
 * The entries of a class table given as JSON: a list of labels (ids 1, 2, … in order), an object
 * label → id, or the manifest's list of {id, label}. Ids are whole numbers 1..65535, labels non-empty
 * strings, neither twice. `where` names the source in errors ("classes.json", "manifest.json: classes").
 */
export function classEntriesFrom(value: unknown, where: string): ClassEntry[] {
  const fail = (field: string, message: string): never => {
    throw new ClassTableError(`${where}${field ? `: ${field}` : ""}: ${message}`);
  };
  let pairs: Array<{ label: unknown; id: unknown; field: string }>;
  if (Array.isArray(value)) {
    pairs = value.map((item, i) =>
      typeof item === "object" && item !== null && !Array.isArray(item)
        ? { label: (item as { label?: unknown }).label, id: (item as { id?: unknown }).id, field: `[${i}]` }
        : { label: item, id: i + 1, field: `[${i}]` },
    );
  } else if (typeof value === "object" && value !== null) {
    pairs = Object.entries(value).map(([label, id]) => ({ label, id, field: JSON.stringify(label) }));
  } else {
    return fail("", `must be a list of labels (["car","person"]) or an object of label → id ({"car":1,"person":5}), got ${JSON.stringify(value) ?? typeof value}`);
  }
  if (pairs.length > MAX_ID) fail("", `holds ${pairs.length} classes; at most ${MAX_ID} fit the 16-bit class layer`);
  const byLabel = new Map<string, string>();
  const byId = new Map<number, string>();
  const entries: ClassEntry[] = [];
  for (const { label, id, field } of pairs) {
    const problem = labelProblem(label);
    if (problem) fail(field, `the label ${problem}, got ${shortJson(label)}`);
    const name = label as string;
    if (typeof id !== "number" || !Number.isInteger(id) || id < 1 || id > MAX_ID) {
      fail(field, `the id of '${name}' must be a whole number from 1 to ${MAX_ID} (0 is unlabelled), got ${JSON.stringify(id) ?? typeof id}`);
    }
    const n = id as number;
    if (byLabel.has(name)) fail(field, `label '${name}' is given twice (also at ${byLabel.get(name)})`);
    if (byId.has(n)) fail(field, `id ${n} is given to '${name}' and to ${byId.get(n)}`);
    byLabel.set(name, field || "the list");
    byId.set(n, `'${name}' (${field})`);
    entries.push({ id: n, label: name });
  }
  return entries.sort((a, b) => a.id - b.id);
}

/**
 * --classes: a JSON file (a name ending in .json, or anything but a folder at that path) or a comma
 * list of labels ("car,person" → car 1, person 2). Throws ClassTableError naming the file and field.
 */
export function readClassesOption(value: string): ClassEntry[] {
  const isFile = /\.json$/i.test(value) || isNonFolder(value);
  if (!isFile) return classEntriesFrom(value.split(",").map((label) => label.trim()), "--classes");
  let text: string;
  try {
    text = readSmallFile(value, MAX_MANIFEST_BYTES, { followLinks: true }).text; // the user's own file: a link to it is fine
  } catch (err) {
    throw new ClassTableError(`${value}: cannot read the class table: ${err instanceof RangeError ? err.message : describeFsError(err)}`);
  }
  let json: unknown;
  try {
    // Editors on Windows start UTF-8 files with a BOM (accepted in jobs files too); it is not part of the JSON.
    json = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    throw new ClassTableError(`${value}: not valid JSON: ${(err as Error).message}`);
  }
  return classEntriesFrom(json, value);
}

/**
 * Whether something that is not a folder is at `name`. A name that cannot be a path (a long label list:
 * ENAMETOOLONG; "a.txt/b" under a file: ENOTDIR) or a folder that happens to share a label's name is a list.
 */
function isNonFolder(name: string): boolean {
  try {
    const stat = fs.statSync(name, { throwIfNoEntry: false });
    return stat !== undefined && !stat.isDirectory();
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// The manifest

export interface RunManifestOptions {
  /** The dataset folder (its real path). */
  root: string;
  /** The run's options, recorded after recordableOptions. */
  options: object;
  /** The layers the run asks for (jobs may ask for more: noteLayers). */
  layers: readonly LayerName[];
  /** The class table the run was given (--classes); labels the dataset already has keep their ids. */
  classes?: readonly ClassEntry[];
  /** --seed: must match the dataset's seed when it has one; absent: the dataset's, else a random one. */
  seed?: number;
  /** The run renders a --template. */
  template?: TemplateRequest;
  /** The dataset's manifest.json as readRunManifest read it before the run touched anything; undefined when it has none. */
  previous: RunManifestData | undefined;
  log?: (line: string) => void;
}

export class RunManifest {
  private readonly file: string;
  private readonly data: RunManifestData;
  private readonly run: RunEntry;
  /** The run's class table: pass it to the Farm; every id it hands out is recorded here. */
  readonly classes: ClassTable;
  /** With a template: how to cut its frames into jobs (templateJobs), the same way as every earlier run. */
  readonly templateSplit?: TemplateSplit;
  /** This run's template record, written by templateQueued. */
  private readonly template?: TemplateEntry;
  private timer?: NodeJS.Timeout;
  private lastWrite = 0;
  private readonly log: (line: string) => void;

  /**
   * Reads frames.jsonl's class ids (call after resume has compacted it), checks them against the
   * previous manifest's and the run's class table, appends this run and writes the file. Throws
   * DatasetOpenError naming both sources when the class tables disagree: the start is refused before
   * any frame could get a class id that means two things.
   */
  static async start(options: RunManifestOptions): Promise<RunManifest> {
    const file = path.join(options.root, RUN_MANIFEST_FILE);
    removeStaleTemps(options.root);
    const seed = await runSeed(options.root, options.previous, options.seed, options.log ?? console.log);
    const template = options.template && templateEntry(file, options.previous?.template, options.template);
    const classes = await restoreClassTable(options.root, options.previous, options.classes ?? []);
    const manifest = new RunManifest(file, options.previous, options, classes, seed, template);
    try {
      manifest.writeNow();
    } catch (err) {
      // A dataset that can't take its manifest can't take frames either: refuse the start.
      throw new DatasetOpenError(`${file}: cannot be written: ${describeFsError(err)}`);
    }
    return manifest;
  }

  /**
   * @param seed the run's seed (runSeed)
   * @param template this run's template cut (templateEntry), when it renders one
   */
  private constructor(
    file: string, previous: RunManifestData | undefined, options: RunManifestOptions, classes: ClassEntry[],
    readonly seed: number, template: TemplateEntry | undefined,
  ) {
    this.file = file;
    this.log = options.log ?? ((line) => console.log(line));
    const now = new Date().toISOString();
    this.run = { started: now, options: runOptions(options.options), browsers: [] };
    this.data = {
      format: FORMAT,
      version: VERSION,
      tabfarm: ownVersion(),
      created: previous?.created ?? now,
      updated: now,
      layers: { ...previous?.layers },
      classes,
      seed,
      // This run's cut is recorded once its jobs are queued (templateQueued): a start refused while queueing pins nothing.
      ...(previous?.template ? { template: previous.template } : {}),
      runs: [...(previous?.runs ?? []), this.run],
    };
    this.addLayers(options.layers);
    if (template && options.template) {
      const { frames_per_job, frames } = template;
      this.templateSplit = { frames: options.template.frames, framesPerJob: frames_per_job, cuts: frames };
      this.template = template;
    }
    this.classes = new ClassTable(classes.map((c) => [c.label, c.id]));
    this.classes.onAdd = () => this.changed();
  }

  /** The manifest as it stands (a copy). */
  snapshot(): RunManifestData {
    return structuredClone({ ...this.data, classes: this.classes.entries() });
  }

  /** The template's jobs are queued: its cut is recorded (at once: a crash must not lose it). */
  templateQueued(): void {
    if (!this.template) return;
    this.data.template = this.template;
    this.tryWrite();
  }

  /** Layers a job or handler asked for; recorded when new. */
  noteLayers(names: Iterable<string>): void {
    if (this.addLayers(names)) this.changed();
  }

  /** A session joined: its browser and renderer are recorded when this run has not seen them. */
  noteBrowser(info: Pick<BrowserInfo, "userAgent" | "renderer">): void {
    const entry = { browser: browserOf(info.userAgent).slice(0, 300), renderer: info.renderer.slice(0, 300) };
    const browsers = this.run.browsers;
    if (browsers.length >= MAX_BROWSERS_PER_RUN || browsers.some((b) => b.browser === entry.browser && b.renderer === entry.renderer)) return;
    browsers.push(entry);
    this.changed();
  }

  /**
   * The run ended (finished or stopped): its end, the dataset's counts (when known) and whatever was
   * pending, written at once. A failed write is logged: the previous manifest.json stays whole.
   */
  finish(counts: RunCounts | undefined): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.run.ended = new Date().toISOString();
    if (counts) this.run.counts = counts;
    this.tryWrite();
  }

  get ended(): boolean {
    return this.run.ended !== undefined;
  }

  private addLayers(names: Iterable<string>): boolean {
    const known = (name: string): name is LayerName => (LAYER_NAMES as readonly string[]).includes(name);
    const layers = this.data.layers as Record<string, LayerDescription>;
    let added = false;
    for (const name of names) {
      if (!known(name) || Object.hasOwn(layers, name)) continue;
      const { name: _name, ...description } = LAYERS[name];
      layers[name] = structuredClone(description) as LayerDescription;
      added = true;
    }
    if (!added) return false;
    // Declaration order; layers a newer tabfarm recorded (names this one does not know) are kept, after them.
    const order = [...LAYER_NAMES.filter((n) => Object.hasOwn(layers, n)), ...Object.keys(layers).filter((n) => !known(n))];
    this.data.layers = Object.fromEntries(order.map((n) => [n, layers[n]]));
    return true;
  }

  /** Something to record: written within WRITE_INTERVAL_MS, coalesced with whatever else changes meanwhile. */
  private changed(): void {
    // After the end (a browser joining before the farm closes) at once: a timer could fire after the run
    // released the dataset's lock, and overwrite the manifest of the run that took it next.
    if (this.ended) return this.tryWrite();
    if (this.timer) return;
    const wait = Math.max(0, this.lastWrite + WRITE_INTERVAL_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.tryWrite();
    }, wait);
    this.timer.unref();
  }

  /** A write that fails (disk full) is logged; the previous file stays whole, and the next change or the end writes it all. */
  private tryWrite(): void {
    try {
      this.writeNow();
    } catch (err) {
      this.log(`dataset: cannot write ${RUN_MANIFEST_FILE} (the previous one is kept): ${describeFsError(err)}`);
    }
  }

  private writeNow(): void {
    this.data.updated = new Date().toISOString();
    this.data.classes = this.classes.entries();
    writeSmallFile(this.file, JSON.stringify(this.data, null, 2) + "\n");
    this.lastWrite = Date.now();
  }
}

// ---------------------------------------------------------------------------------------------
// The dataset's seed and template split

/**
 * The run's seed. Frames already drawn bind it: when frames.jsonl has a line with a seed, the seed (--seed,
 * else manifest.json's) must be the one that drew it — a job resumed under another seed would draw other
 * values than its first frames did, whatever manifest.json says (lost, edited). Without such a line nothing
 * is bound yet: --seed, else manifest.json's, else a random one, printed so the run can be repeated.
 */
async function runSeed(root: string, previous: RunManifestData | undefined, given: number | undefined, log: (line: string) => void): Promise<number> {
  const recorded = previous?.seed;
  const drawnBy = await firstSeededLine(root);
  if (drawnBy) {
    const { line, job, frame, seed: lineSeed } = drawnBy;
    const where = `${FRAMES_INDEX} line ${line} (job ${job} frame ${frame}, seed ${lineSeed})`;
    const seed = given ?? recorded;
    if (seed === undefined) {
      throw new DatasetOpenError(
        `${path.join(root, RUN_MANIFEST_FILE)}: records no seed, but ${where} was drawn with one: pass the --seed its frames were drawn with ` +
          `(printed when they were rendered), or restore ${RUN_MANIFEST_FILE}.`,
      );
    }
    if (frameSeed(seed, job, frame) !== lineSeed) {
      const source = given !== undefined ? `--seed ${given}` : `${path.join(root, RUN_MANIFEST_FILE)}: its seed ${recorded}`;
      const known = recorded !== undefined && recorded !== seed && frameSeed(recorded, job, frame) === lineSeed ? ` this dataset was rendered with seed ${recorded}:` : "";
      throw new DatasetOpenError(
        `${source}:${known} it did not draw ${where}, and a job resumed under another seed would draw other values than its first frames did. ` +
          `${known ? `Leave --seed out (seed ${recorded} is used)` : "Pass the --seed its frames were drawn with"} or choose another --out.`,
      );
    }
    log(`seed: ${seed} (${given !== undefined ? "--seed" : `the dataset's, from ${RUN_MANIFEST_FILE}`}; it drew the dataset's frames)`);
    return seed;
  }
  if (given !== undefined) {
    log(`seed: ${given}${recorded !== undefined && recorded !== given ? ` (replaces ${recorded}, which drew no frame yet)` : ""}`);
    return given;
  }
  if (recorded !== undefined) {
    log(`seed: ${recorded} (the dataset's, from ${RUN_MANIFEST_FILE})`);
    return recorded;
  }
  const drawn = randomRunSeed();
  log(`seed: ${drawn} (random; pass --seed ${drawn} to draw the same values in another dataset)`);
  return drawn;
}

/** The first line of frames.jsonl that records its frame's seed (lines written before seeds have none). */
async function firstSeededLine(root: string): Promise<{ line: number; job: string; frame: number; seed: number } | undefined> {
  for await (const { line, record } of readFrameLines(root)) {
    const seed = record?.seed;
    // (readFrameLines checked job and frame: a record's are a string and a whole number ≥ 0.)
    if (record && isFrameSeed(seed)) {
      return { line, job: record.job, frame: record.frame, seed };
    }
  }
  return undefined;
}

/**
 * This run's template cut: the dataset's frames per job (another --frames-per-job would render frames again
 * under other job ids: refused), and the frame counts of every run so far, this one's included. A run may
 * grow the template, never shrink it (the jobs of the larger count are queued already).
 */
function templateEntry(file: string, before: TemplateEntry | undefined, request: TemplateRequest): TemplateEntry {
  const perJob = request.framesPerJob ?? before?.frames_per_job ?? DEFAULT_FRAMES_PER_JOB;
  if (before && before.frames_per_job !== perJob) {
    throw new DatasetOpenError(
      `--frames-per-job ${perJob}: this dataset's template frames were cut into jobs of ${before.frames_per_job} (${file}); ` +
        `other cuts would render frames again under other job ids. Leave --frames-per-job out (or give ${before.frames_per_job}), or choose another --out.`,
    );
  }
  const most = (before?.frames ?? []).reduce((a, b) => Math.max(a, b), 0);
  if (request.frames < most) {
    throw new DatasetOpenError(
      `--frames ${request.frames}: this dataset's template already has ${most} frames (${file}), queued or rendered; a template run grows, ` +
        `never shrinks: give --frames ${most} or more, or choose another --out.`,
    );
  }
  const frames = [...new Set([...(before?.frames ?? []), request.frames])].sort((a, b) => a - b);
  if (frames.length > MAX_TEMPLATE_CUTS) {
    throw new DatasetOpenError(`--frames ${request.frames}: this dataset's template has grown ${MAX_TEMPLATE_CUTS} times, the most ${file} records; choose another --out`);
  }
  return { frames_per_job: perJob, frames };
}

// ---------------------------------------------------------------------------------------------
// Reading and restoring

const unreadable = (file: string, fault: string) =>
  new DatasetOpenError(
    `${file}: ${fault}. It holds the dataset's class table and run history: restore it from a backup, fix it, ` +
      `or move it away to start a new history (class ids are then restored from ${FRAMES_INDEX}).`,
  );

/**
 * The manifest.json of dataset `root`, checked; undefined when there is none (a new dataset, or one
 * made before manifests). Throws DatasetOpenError naming the file and the fault when it can't be used.
 */
export function readRunManifest(root: string): RunManifestData | undefined {
  const file = path.join(root, RUN_MANIFEST_FILE);
  if (!fs.lstatSync(file, { throwIfNoEntry: false })) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(readSmallFile(file, MAX_MANIFEST_BYTES).text);
  } catch (err) {
    throw unreadable(file, `cannot be read: ${err instanceof SyntaxError ? `not valid JSON (${err.message})` : err instanceof RangeError ? err.message : describeFsError(err)}`);
  }
  const data = value as Partial<RunManifestData> | null;
  if (typeof data !== "object" || data === null || data.format !== FORMAT) throw unreadable(file, `is not a tabfarm manifest (expected "format": "${FORMAT}")`);
  if (!Number.isInteger(data.version)) throw unreadable(file, `"version" must be a whole number`);
  if ((data.version as number) > VERSION) throw unreadable(file, `has version ${data.version}; this tabfarm reads up to ${VERSION}: use a newer tabfarm`);
  if (typeof data.created !== "string") throw unreadable(file, `"created" must be a date string`);
  if (!Array.isArray(data.runs) || !data.runs.every((r) => typeof r === "object" && r !== null && !Array.isArray(r))) throw unreadable(file, `"runs" must be a list of runs`);
  if (typeof data.layers !== "object" || data.layers === null || Array.isArray(data.layers)) throw unreadable(file, `"layers" must be an object of layer declarations`);
  if (data.seed !== undefined && !isRunSeed(data.seed)) throw unreadable(file, `"seed" must be a whole number from 0 to ${RUN_SEED_MAX}`);
  if (data.template !== undefined) {
    const { frames_per_job: perJob, frames } = (data.template ?? {}) as Partial<TemplateEntry>;
    const whole = (n: unknown, max: number) => Number.isSafeInteger(n) && (n as number) >= 1 && (n as number) <= max;
    if (!whole(perJob, LIMITS.maxFramesPerJob) || !Array.isArray(frames) || frames.length > MAX_TEMPLATE_CUTS || !frames.every((n) => whole(n, MAX_TEMPLATE_FRAMES))) {
      throw unreadable(
        file,
        `"template" must be {"frames_per_job": a whole number from 1 to ${LIMITS.maxFramesPerJob}, "frames": a list of at most ${MAX_TEMPLATE_CUTS} whole numbers from 1 to ${MAX_TEMPLATE_FRAMES}}`,
      );
    }
  }
  try {
    data.classes = classEntriesFrom(data.classes ?? [], `${RUN_MANIFEST_FILE}: classes`);
  } catch (err) {
    throw unreadable(file, `its class table is wrong: ${(err as Error).message}`);
  }
  return data as RunManifestData;
}

/** Where a class id came from, for a conflict's message. */
export interface ClassSource {
  id: number;
  label: string;
  from: string;
}

/**
 * label ↔ class pairs gathered from several sources (manifest.json, frames.jsonl lines, --classes), each
 * checked against those before it: one class id means one label, and one label one class id, in a whole
 * dataset. Resume refuses a start on a disagreement; `verify` reports it.
 */
export class ClassAgreement {
  private readonly byLabel = new Map<string, ClassSource>();
  private readonly byId = new Map<number, ClassSource>();

  /** Adds `source`; returns why it disagrees with an earlier source (naming both), or undefined. */
  add(source: ClassSource): string | undefined {
    const sameLabel = this.byLabel.get(source.label);
    const sameId = this.byId.get(source.id);
    const other = sameLabel && sameLabel.id !== source.id ? sameLabel : sameId && sameId.label !== source.label ? sameId : undefined;
    if (other) {
      return `the class tables disagree: ${other.from} gives '${other.label}' class ${other.id}, but ${source.from} gives '${source.label}' class ${source.id}`;
    }
    if (!sameLabel) {
      this.byLabel.set(source.label, source);
      this.byId.set(source.id, source);
    }
    return undefined;
  }

  /** The agreed table, by id. */
  entries(): ClassEntry[] {
    return [...this.byId.values()].map(({ id, label }) => ({ id, label })).sort((a, b) => a.id - b.id);
  }
}

/**
 * The class table a resumed run continues: manifest.json's, completed with the label → class pairs of
 * frames.jsonl's `instances` (frames written just before a crash may hold classes the manifest had not
 * recorded yet), then the run's --classes. Any label or id that two of them give differently refuses
 * the start, naming both.
 */
async function restoreClassTable(root: string, previous: RunManifestData | undefined, given: readonly ClassEntry[]): Promise<ClassEntry[]> {
  const agreement = new ClassAgreement();
  const add = (source: ClassSource) => {
    const conflict = agreement.add(source);
    if (conflict) {
      throw new DatasetOpenError(
        `${path.join(root, RUN_MANIFEST_FILE)}: ${conflict}. A class id must mean one label in the whole dataset: ` +
          `fix the one that is wrong, or write this run to another --out.`,
      );
    }
  };
  for (const entry of previous?.classes ?? []) add({ ...entry, from: RUN_MANIFEST_FILE });
  for await (const { line, record } of readFrameLines(root)) {
    // A line that is no record (a torn last one) is compact's business.
    for (const entry of record ? frameClasses(record) : []) add({ ...entry, from: `${FRAMES_INDEX} line ${line}` });
  }
  for (const entry of given) add({ ...entry, from: "--classes" });
  return agreement.entries();
}

/**
 * The {id: class, label} of every labelled instance of a frame's line: only entries a manifest may hold (a
 * bad one, from a hand-edited line, would make the next start refuse manifest.json).
 */
export function frameClasses(record: FrameRecord): ClassEntry[] {
  const instances: unknown = record.instances;
  if (!Array.isArray(instances)) return [];
  const entries: ClassEntry[] = [];
  for (const instance of instances) {
    const { label, class: id } = (instance ?? {}) as { label?: unknown; class?: unknown };
    if (labelProblem(label) === undefined && typeof id === "number" && Number.isInteger(id) && id >= 1 && id <= MAX_ID) entries.push({ id, label: label as string });
  }
  return entries;
}

/** A manifest write killed between its temp file and the rename leaves the temp file: removed at the start (under the lock). */
function removeStaleTemps(root: string): void {
  const temp = new RegExp(`^${RUN_MANIFEST_FILE.replace(".", "\\.")}\\.[0-9a-f]{12}\\.tmp$`);
  for (const entry of fs.readdirSync(root, { withFileTypes: true })) {
    if (entry.isFile() && temp.test(entry.name)) fs.rmSync(path.join(root, entry.name), { force: true });
  }
}
