// `merge SHARD... --into DIR`: several datasets ("shards": one per farm server that served one job set)
// become one dataset holding every (job, frame) once, which `verify` passes and `export` reads.
//
// The rules:
// - Each shard is checked and locked first, as export does: not a dataset, a farm holding its lock, or
//   a problem `verify` finds in it refuses the merge (listing the problems), before anything is written.
//   Problems of lines the merge never reads are let pass: lines of a job the shard's queue does not mark
//   done (a server that died between appending a job's lines and marking it done, or whose lease ran out)
//   and a torn last line (a write cut off). Its lock is held until the merge ends, and its frames.jsonl is
//   held open, so the lines copied are the lines verify read (server/export/exportSource.ts).
// - A job is taken whole from ONE shard: the first, in argument order, where the queue marks it done.
//   verify checks that a done job has every frame of its spec, so "done" is "done and complete". Its
//   lines in later shards are dropped and counted (per shard) as duplicates. A job some shard queued but
//   none finished is left out and listed; its partial lines (if any) are dropped and counted too.
// - The same job id done in two shards with specs that differ (compared as canonical JSON) refuses the
//   merge, naming the id and both shards: which frames are right can't be known. A spec that differs
//   where the job is not done (pending, failed) is not compared: that shard's frames are not taken.
// - Files keep their names: a job's files are images/<job>/… in every shard, and a job comes whole from
//   one shard, so no path changes and no line is rewritten for its paths. A line naming a file outside its
//   own job's folder is refused (tabfarm never writes one; two such lines could name one file). Files are
//   read as verify reads them (no link followed, never outside the shard) and copied, or with `link`
//   hard-linked (the shard's file itself, never a link at its name: checked after linking).
// - Class tables: shards number labels by first use, so the same label may have different ids. The merged
//   table is the first shard's, then each later shard's labels: a known label keeps the merged id, a new
//   label keeps its own id when free, else gets the lowest free one. A shard whose ids change has its
//   lines' `instances[].class` rewritten and its class-layer images re-encoded (16-bit PNG, lossless);
//   masks (instance ids) never change.
// - Seeds: a frame's seed derives from its shard's run seed. When any job taken is randomized, the shards
//   that give jobs must have the same seed (else one job set would hold draws of two seeds): different ones
//   refuse the merge, naming the shards and seeds. Without randomized jobs differing seeds are fine, but the
//   merged manifest then records no seed (no one seed drew every line; `verify` checks lines against it).
// - manifest.json: every layer any shard declares, the merged class table, the seed, every shard's runs
//   (each with `shard`: the folder it ran in), and a run entry for the merge itself (its shards, when).
//   run-events.jsonl (status's per-run figures, per server) is not carried over.
// - Written into a staging folder beside DIR (`.tabfarm-merge-<pid>-<random>` in DIR's parent), renamed to
//   DIR at the end: a merge that fails or is stopped (`signal`) leaves nothing. DIR must not exist or be
//   an empty folder; it may not be, or be inside, a shard, nor hold one.
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import Database from "better-sqlite3";
import sharp from "sharp";
import { canonicalJobJson, type JobSpec } from "../../protocol/job.js";
import { LAYER_NAMES, MAX_ID } from "../../protocol/layers.js";
import type { ClassEntry } from "../capture/ClassTable.js";
import { encodeGrey16Png } from "../capture/encodeFrame.js";
import { CaseCollisionError, SqliteQueue } from "../queue/SqliteQueue.js";
import { createFolders, holdIndex, readDatasetFile, removeCreatedFolders, splitAtExisting, verifiedLines, type HeldIndex } from "../export/exportSource.js";
import { DatasetLock } from "./datasetLock.js";
import type { FrameRecord } from "./FrameRecord.js";
import { IMAGES_DIR, inspectDataset, QUEUE_FILE, writeManifest } from "./openDataset.js";
import { FRAMES_INDEX, readFrameLines, recordFiles } from "./readDataset.js";
import {
  frameClasses, readRunManifest, RUN_MANIFEST_FILE,
  type LayerDescription, type RunEntry, type RunManifestData, type TemplateEntry,
} from "./RunManifest.js";
import { writeSmallFile } from "./smallFiles.js";
import { formatProblem, verifyDataset, type VerifyProblem, type VerifyReport } from "./verifyDataset.js";

/** A refusal: bad input (a shard, DIR, options) or shards that can't be merged. The CLI exits 2 with its message. */
export class MergeRefused extends Error {}

/** Problems of a broken shard listed in the refusal (`verify --out SHARD` lists them all). */
export const SHARD_PROBLEMS_SHOWN = 5;
/** Ids listed where a report names jobs (left out, done in several shards); the counts are complete. */
export const IDS_LISTED = 10;
/** Lines whose files are copied at the same time. */
const PARALLEL_LINES = 8;
/** The staging folder's name in DIR's parent: `.tabfarm-merge-<pid>-<random>`. */
export const STAGING_PREFIX = ".tabfarm-merge-";

export interface MergeOptions {
  /** Dataset folders, as given, in order of preference. */
  shards: string[];
  /** Where the merged dataset goes; may be absent only with dryRun. */
  into?: string;
  /** Hard-link files instead of copying them (DIR and the shards on one file system). */
  link?: boolean;
  /** Check and report, write nothing. */
  dryRun?: boolean;
  /** Stops the merge (its reason is thrown, after what it wrote is removed). */
  signal?: AbortSignal;
  /** Progress notes. */
  note?: (line: string) => void;
}

/** A class id a shard's lines and class images get in the merged dataset. */
export interface ClassMove {
  label: string;
  from: number;
  to: number;
}

export interface ShardSummary {
  /** As given, and its real path. */
  given: string;
  root: string;
  /** Jobs the shard's queue marks done, and of them taken from it. */
  jobsDone: number;
  jobsTaken: number;
  framesTaken: number;
  /** Lines of jobs taken from an earlier shard. */
  duplicatesDropped: number;
  /** Lines of jobs this shard did not finish (not done in its queue): never taken. */
  unfinishedDropped: number;
  /** Its class ids that change in the merged dataset. */
  classMoves: ClassMove[];
  seed?: number;
}

export interface MergeReport {
  /** The merged dataset's real path (absent for a dry run without --into). */
  into?: string;
  dryRun: boolean;
  linked: boolean;
  shards: ShardSummary[];
  jobs: number;
  frames: number;
  /** Jobs done in more than one shard (their frames are in several: one shard's are taken). */
  overlapping: { count: number; frames: number; examples: string[] };
  /** Jobs some shard queued but none finished: not in the merged dataset. */
  leftOut: { count: number; ids: string[] };
  classes: ClassEntry[];
  seed?: number;
  /** Things the user should know (a seed not recorded, a template cut dropped, …). */
  notes: string[];
}

// ---------------------------------------------------------------------------------------------
// Pure parts (tests/unit/mergeShards.test.ts)

/** Whether two real paths are the same folder or one is inside the other. */
export function pathsOverlap(a: string, b: string): boolean {
  return a === b || a.startsWith(b.endsWith(path.sep) ? b : b + path.sep) || b.startsWith(a.endsWith(path.sep) ? a : a + path.sep);
}

/**
 * A folder and every folder above it, as identities (device and inode: `folderChain`). A path names a folder
 * one way among several: a bind mount shows one folder at two real paths, which a path comparison can't tell.
 */
export type FolderChain = readonly string[];

/** The identities of `folder` (which exists) and of each folder above it, innermost first. */
export function folderChain(folder: string): FolderChain {
  const chain: string[] = [];
  for (let at = folder; ; at = path.dirname(at)) {
    const stat = fs.statSync(at);
    chain.push(`${stat.dev}:${stat.ino}`);
    if (path.dirname(at) === at) return chain;
  }
}

/**
 * Refuses a shard given twice (also via another name, a link or a bind mount) and a DIR that is, holds or is
 * inside a shard. `folders`: the shard's chain, and for DIR the chain of its nearest folder that exists (itself
 * when it exists): the same folder at two paths (a bind mount) is caught by them when the paths look apart.
 */
export function checkOverlaps(
  shards: readonly { given: string; root: string; folders?: FolderChain }[],
  into?: { given: string; real: string; folders?: FolderChain },
): void {
  /** Whether `inner`'s chain passes through `outer`'s folder: inner is outer, or inside it. */
  const within = (inner?: FolderChain, outer?: FolderChain) => inner !== undefined && outer?.[0] !== undefined && inner.includes(outer[0]);
  for (let i = 0; i < shards.length; i++) {
    const shard = shards[i]!;
    for (let j = 0; j < i; j++) {
      const earlier = shards[j]!;
      if (shard.root === earlier.root || (shard.folders?.[0] !== undefined && shard.folders[0] === earlier.folders?.[0])) {
        const same = shard.given === earlier.given ? ""
          : shard.root === earlier.root ? ` (${earlier.given} and ${shard.given} are both ${shard.root})`
          : ` (${earlier.given} and ${shard.given} are one folder, seen at two places: a bind mount)`;
        throw new MergeRefused(`shard ${shard.given}: is given twice${same}; give each shard once`);
      }
      if (pathsOverlap(shard.root, earlier.root) || within(shard.folders, earlier.folders) || within(earlier.folders, shard.folders)) {
        throw new MergeRefused(`shards ${earlier.given} and ${shard.given}: one is inside the other; a dataset holds no other dataset`);
      }
    }
    if (into && (pathsOverlap(shard.root, into.real) || within(into.folders, shard.folders))) {
      const how = into.real === shard.root ? "is" : shard.root.startsWith(into.real + path.sep) ? "holds" : "is inside";
      throw new MergeRefused(`--into ${into.given}: ${how} the shard ${shard.given} (${shard.root}); merge into a folder apart from every shard`);
    }
  }
}

/** A job taken into the merge: from which shard, its spec's digest (sha256 of canonical JSON: specs are compared, not kept), whether it randomizes. */
interface Pick {
  shard: number;
  spec: string;
  randomized: boolean;
}

/**
 * Which shard each job is taken from: the first (in the order shards are offered) where it is done.
 * Remembers the jobs done in several shards and those queued but not done anywhere.
 */
export class JobPicks {
  readonly picks = new Map<string, Pick>();
  /** Job → the later shards where it is done too. */
  readonly alsoDoneIn = new Map<string, number[]>();
  private readonly notDone = new Set<string>();

  constructor(private readonly shardNames: readonly string[]) {}

  /** A done job of shard `shard` with its spec (JSON text, as queued). Throws MergeRefused when an earlier shard has it done with another spec. */
  addDone(shard: number, id: string, specJson: string): void {
    let spec: unknown;
    try {
      spec = JSON.parse(specJson);
    } catch {
      throw new MergeRefused(`shard ${this.shardNames[shard]}: ${QUEUE_FILE}: job ${id}'s spec is not JSON`);
    }
    const canonical = createHash("sha256").update(canonicalJobJson(spec)).digest("base64");
    const earlier = this.picks.get(id);
    if (!earlier) {
      const randomize = (spec as { randomize?: unknown } | null)?.randomize;
      this.picks.set(id, { shard, spec: canonical, randomized: Array.isArray(randomize) && randomize.length > 0 });
      return;
    }
    if (earlier.spec !== canonical) {
      throw new MergeRefused(
        `job ${id}: is done in shard ${this.shardNames[earlier.shard]} and in shard ${this.shardNames[shard]} with different specs; ` +
          `which frames are right can't be told: give one of them another id, or leave one shard out`,
      );
    }
    const also = this.alsoDoneIn.get(id);
    if (also) also.push(shard);
    else this.alsoDoneIn.set(id, [shard]);
  }

  /** A job shard `shard` queued but did not finish (pending, leased or failed). */
  addNotDone(id: string): void {
    this.notDone.add(id);
  }

  /** Jobs queued somewhere and done nowhere, in the order first seen. */
  leftOut(): string[] {
    return [...this.notDone].filter((id) => !this.picks.has(id));
  }
}

/**
 * One class table for shards that numbered labels each their own way (see the header). Returns the merged
 * table (by id) and, per shard, the ids that change (a map old → new; empty when none does).
 */
export function mergeClassTables(tables: readonly ClassEntry[][]): { entries: ClassEntry[]; moves: Map<number, number>[]; labels: Map<number, string>[] } {
  const byLabel = new Map<string, number>();
  const byId = new Map<number, string>();
  let lowestFree = 1;
  const take = (label: string, id: number) => {
    byLabel.set(label, id);
    byId.set(id, label);
  };
  const moves: Map<number, number>[] = [];
  const labels: Map<number, string>[] = [];
  for (const table of tables) {
    const move = new Map<number, number>();
    const names = new Map<number, string>();
    const later: ClassEntry[] = [];
    for (const { id, label } of [...table].sort((a, b) => a.id - b.id)) {
      names.set(id, label);
      const known = byLabel.get(label);
      if (known !== undefined) {
        if (known !== id) move.set(id, known);
      } else if (!byId.has(id)) take(label, id);
      else later.push({ id, label }); // its id means another label here: after this table's own ids are placed
    }
    for (const { id, label } of later) {
      if (byLabel.has(label)) {
        // The same label twice in one table can't be (a table gives a label one id); keep the first.
        move.set(id, byLabel.get(label)!);
        continue;
      }
      while (byId.has(lowestFree)) lowestFree++;
      if (lowestFree > MAX_ID) throw new MergeRefused(`the shards' class tables hold more than ${MAX_ID} labels together; the 16-bit class layer holds ${MAX_ID}`);
      take(label, lowestFree);
      move.set(id, lowestFree);
    }
    moves.push(move);
    labels.push(names);
  }
  const entries = [...byId].map(([id, label]) => ({ id, label })).sort((a, b) => a.id - b.id);
  return { entries, moves, labels };
}

/** The record with its instances' classes moved (a new object), or undefined when no class moves. */
export function moveLineClasses(record: FrameRecord, move: ReadonlyMap<number, number>): FrameRecord | undefined {
  if (move.size === 0 || !Array.isArray(record.instances)) return undefined;
  let changed = false;
  const instances = record.instances.map((instance) => {
    const to = typeof instance?.class === "number" ? move.get(instance.class) : undefined;
    if (to === undefined) return instance;
    changed = true;
    return { ...instance, class: to };
  });
  return changed ? { ...record, instances } : undefined;
}

/** Class ids moved in place, all at once (a swap of two ids is a swap). Returns whether any pixel changed. */
export function moveClassPixels(samples: Uint16Array, move: ReadonlyMap<number, number>): boolean {
  const table = new Uint16Array(65536);
  for (let i = 0; i < table.length; i++) table[i] = i;
  for (const [from, to] of move) table[from] = to;
  let changed = false;
  for (let i = 0; i < samples.length; i++) {
    const to = table[samples[i]!]!;
    if (to !== samples[i]) {
      samples[i] = to;
      changed = true;
    }
  }
  return changed;
}

/**
 * The merged dataset's seed. When any job taken is randomized, every shard that gave jobs must have the same
 * seed (else a MergeRefused naming them and their seeds): one job set, one seed its draws can be repeated
 * from. Without randomized jobs a frame's seed draws nothing: differing seeds are recorded as none, with a note.
 */
export function mergedSeed(shards: readonly { name: string; seed?: number; jobs: number; randomizedJobs: number }[]): { seed?: number; note?: string } {
  const describe = (s: { name: string; seed?: number }) => `${s.name} (seed ${s.seed ?? "not recorded"})`;
  const giving = shards.filter((s) => s.jobs > 0);
  if (giving.length === 0) return {};
  if (new Set(giving.map((s) => s.seed)).size === 1) return { seed: giving[0]!.seed };
  const randomized = giving.filter((s) => s.randomizedJobs > 0);
  if (randomized.length > 0) {
    throw new MergeRefused(
      `the shards were rendered with different seeds: ${giving.map(describe).join(", ")}, and jobs taken from ${randomized.map((s) => s.name).join(", ")} are randomized; ` +
        `one job set's draws come from one seed (give every farm server the same --seed): render them again with one --seed`,
    );
  }
  return {
    note: `the shards have different seeds (${giving.map(describe).join(", ")}; none of the jobs taken is randomized): ${RUN_MANIFEST_FILE} records no seed, ` +
      `and a farm run on the merged dataset needs --seed`,
  };
}

/** Every layer any shard declares, in declaration order (layers a newer tabfarm recorded after them). */
export function mergeLayers(all: readonly Partial<Record<string, LayerDescription>>[]): Record<string, LayerDescription> {
  const layers: Record<string, LayerDescription> = {};
  for (const shard of all) for (const [name, description] of Object.entries(shard)) if (description && !Object.hasOwn(layers, name)) layers[name] = description;
  const known = (LAYER_NAMES as readonly string[]).filter((n) => Object.hasOwn(layers, n));
  const other = Object.keys(layers).filter((n) => !(LAYER_NAMES as readonly string[]).includes(n));
  return Object.fromEntries([...known, ...other].map((n) => [n, layers[n]!]));
}

/** The shards' template cuts: kept when they cut jobs alike (a resume cuts the same way), else dropped with a note. */
export function mergeTemplates(all: readonly { name: string; template?: TemplateEntry }[]): { template?: TemplateEntry; note?: string } {
  const cut = all.filter((s) => s.template);
  if (cut.length === 0) return {};
  const perJob = new Set(cut.map((s) => s.template!.frames_per_job));
  if (perJob.size > 1) {
    return { note: `the shards cut --template frames into jobs differently (${cut.map((s) => `${s.name}: ${s.template!.frames_per_job} per job`).join(", ")}): ${RUN_MANIFEST_FILE} records no template cut` };
  }
  const frames = [...new Set(cut.flatMap((s) => s.template!.frames))].sort((a, b) => a - b);
  return { template: { frames_per_job: cut[0]!.template!.frames_per_job, frames } };
}

// ---------------------------------------------------------------------------------------------
// The merge

/** A shard while the merge holds it. */
interface Shard {
  given: string;
  root: string;
  folders: FolderChain;
  lock?: DatasetLock;
  held?: HeldIndex;
  report?: VerifyReport;
  /** verify's lines, less a torn last line (blockingProblems): the lines read again. */
  linesToRead?: number;
  manifest?: RunManifestData;
  classes: ClassEntry[];
  summary: ShardSummary;
}

/** Where the merged dataset goes. */
interface Into {
  given: string;
  /** Its absolute path through the links of what exists. */
  real: string;
  /** Missing folders above it, outermost first (created, and removed again if the merge fails). */
  missingParents: string[];
  /** The chain of its nearest folder that exists (checkOverlaps). */
  folders: FolderChain;
}

/** Merges `options.shards` into `options.into` (or, with dryRun, only reports). Throws MergeRefused for bad input. */
export async function mergeShards(options: MergeOptions): Promise<MergeReport> {
  const note = options.note ?? (() => {});
  if (options.shards.length === 0) throw new MergeRefused("merge: give the shards (dataset folders) to merge");
  if (options.into === undefined && !options.dryRun) throw new MergeRefused("merge: give --into DIR (a new or empty folder), or --dry-run");
  const into = options.into === undefined ? undefined : resolveInto(options.into);
  const shards: Shard[] = options.shards.map((given) => {
    const root = resolveShard(given);
    return { given, root, folders: folderChain(root), classes: [], summary: { given, root, jobsDone: 0, jobsTaken: 0, framesTaken: 0, duplicatesDropped: 0, unfinishedDropped: 0, classMoves: [] } };
  });
  checkOverlaps(shards, into);
  if (options.link && into) checkSameFileSystem(shards, into);

  try {
    // Locked and held before verify (as export does): no farm appends or compacts while the merge reads.
    for (const shard of shards) lockShard(shard, note);
    const broken: string[] = [];
    for (const shard of shards) {
      note(`merge: verifying shard ${shard.given} …`);
      shard.report = await raceAbort(verifyDataset(shard.root), options.signal);
      shard.linesToRead = shard.report.lines;
      const problems = shard.report.problemCount === 0 ? [] : await raceAbort(blockingProblems(shard), options.signal);
      const passing = shard.report.problemCount - problems.length;
      if (passing > 0) note(`merge: shard ${shard.given}: ${passing} problem(s) of lines it never finished (jobs not done in its ${QUEUE_FILE}, a torn last line) let pass: those lines are not taken`);
      if (problems.length === 0) continue;
      broken.push(`shard ${shard.given}: ${problems.length} problem(s):`, ...problems.slice(0, SHARD_PROBLEMS_SHOWN).map((p) => `  ${formatProblem(p)}`));
      if (problems.length > SHARD_PROBLEMS_SHOWN) broken.push(`  … and ${problems.length - SHARD_PROBLEMS_SHOWN} more (\`verify --out ${shard.given}\` lists them)`);
    }
    if (broken.length) {
      throw new MergeRefused(`${broken.join("\n")}\nmerge reads only shards that \`verify\` passes, but for lines of jobs they did not finish: fix or re-render them, or leave them out`);
    }

    const picks = new JobPicks(shards.map((s) => s.given));
    for (const [i, shard] of shards.entries()) {
      shard.manifest = readRunManifest(shard.root); // verify read it without a problem
      shard.summary.seed = shard.manifest?.seed;
      readQueue(shard, i, picks);
    }
    const lineCounts = await countLines(shards, picks, options.signal);
    const classes = mergeClassTables(shards.map((s) => s.classes));
    for (const [i, shard] of shards.entries()) {
      shard.summary.classMoves = [...classes.moves[i]!].map(([from, to]) => ({ label: classes.labels[i]!.get(from)!, from, to }));
    }
    const seed = mergedSeed(shards.map((s, i) => ({ name: s.given, seed: s.manifest?.seed, jobs: s.summary.jobsTaken, randomizedJobs: lineCounts.randomizedJobs[i]! })));
    const template = mergeTemplates(shards.map((s) => ({ name: s.given, template: s.manifest?.template })));
    const report = mergeReport(shards, picks, lineCounts.frames, classes.entries, seed.seed, options, into);
    for (const n of [seed.note, template.note]) if (n) report.notes.push(n);
    if (options.dryRun || !into) return report;

    const now = new Date().toISOString();
    const manifest = mergedManifest(shards, report, template.template, now);
    await writeMerged(shards, picks, classes.moves, manifest, into, options);
    return report;
  } finally {
    for (const shard of shards) {
      shard.held?.release();
      shard.lock?.release();
    }
  }
}

function resolveShard(given: string): string {
  if (typeof given !== "string" || given.trim() === "") throw new MergeRefused(`shard ${JSON.stringify(given)}: an empty path names no folder`);
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(given, { throwIfNoEntry: false });
  } catch (err) {
    throw new MergeRefused(`shard ${given}: cannot be used: ${(err as Error).message}`);
  }
  if (!stat) {
    const link = fs.lstatSync(given, { throwIfNoEntry: false });
    throw new MergeRefused(link?.isSymbolicLink() ? `shard ${given}: a symbolic link to ${fs.readlinkSync(given)}, which does not exist` : `shard ${given}: no such folder`);
  }
  if (!stat.isDirectory()) throw new MergeRefused(`shard ${given}: is a file, not a dataset folder`);
  return fs.realpathSync(given);
}

/** DIR: missing (its missing parents are made), or an empty folder; through links of what exists. */
function resolveInto(given: string): Into {
  if (typeof given !== "string" || given.trim() === "") throw new MergeRefused(`--into ${JSON.stringify(given)}: an empty path names no folder`);
  const full = path.resolve(given);
  const here = fs.lstatSync(full, { throwIfNoEntry: false });
  if (here) {
    const stat = fs.statSync(full, { throwIfNoEntry: false });
    if (!stat) throw new MergeRefused(`--into ${given}: a symbolic link to ${fs.readlinkSync(full)}, which does not exist`);
    if (!stat.isDirectory()) throw new MergeRefused(`--into ${given}: is a file; give a new or empty folder`);
    const real = fs.realpathSync(full);
    const held = fs.readdirSync(real);
    if (held.length > 0) {
      throw new MergeRefused(
        `--into ${given}: is not empty (it holds ${held.sort().slice(0, 5).join(", ")}${held.length > 5 ? ` and ${held.length - 5} more` : ""}); ` +
          `merge writes a new dataset into a new or empty folder`,
      );
    }
    if (path.dirname(real) === real) throw new MergeRefused(`--into ${given}: is the root folder; give a folder inside it`);
    // The merged folder replaces DIR at the end (a rename): a shell sitting in DIR would be left in the old, empty one.
    const cwd = fs.realpathSync(process.cwd());
    if (cwd === real || cwd.startsWith(real + path.sep)) {
      throw new MergeRefused(`--into ${given}: is the folder this merge runs in (or holds it); the merged dataset replaces that folder at the end: run the merge from another folder, or give a new one`);
    }
    return { given, real, missingParents: [], folders: folderChain(real) };
  }
  const { existing, rest } = splitAtExisting(full); // full does not exist (lstat above): rest names at least it
  let resolved: string;
  try {
    resolved = fs.realpathSync(existing);
  } catch (err) {
    throw new MergeRefused(`--into ${given}: ${existing} cannot be resolved (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; a link to nowhere?)`);
  }
  if (!fs.statSync(resolved).isDirectory()) throw new MergeRefused(`--into ${given}: ${existing} is a file, not a folder`);
  const parents = rest.slice(0, -1);
  return { given, real: path.join(resolved, ...rest), missingParents: parents.map((_, i) => path.join(resolved, ...parents.slice(0, i + 1))), folders: folderChain(resolved) };
}

/** --link: a hard link can't cross file systems; said before anything is read. */
function checkSameFileSystem(shards: readonly Shard[], into: Into): void {
  let existing = path.dirname(into.real);
  while (!fs.existsSync(existing)) existing = path.dirname(existing);
  const dev = fs.statSync(existing).dev;
  for (const shard of shards) {
    if (fs.statSync(shard.root).dev !== dev) {
      throw new MergeRefused(`--link: shard ${shard.given} is on another file system than --into ${into.given}; a hard link can't cross file systems: leave out --link to copy`);
    }
  }
}

/** A shard's own refusal (not a dataset, locked) names it as a shard: "shard X: …". */
function asShardError(shard: Shard, err: unknown): MergeRefused {
  const message = (err as Error)?.message ?? String(err);
  for (const prefix of [`--out ${shard.given}: `, `--out ${shard.root}: `]) {
    if (message.startsWith(prefix)) return new MergeRefused(`shard ${shard.given}: ${message.slice(prefix.length)}`);
  }
  return new MergeRefused(`shard ${shard.given}: ${message}`);
}

/** Checks the shard is a dataset (before a lock file is made in it), takes its lock, holds its frames.jsonl. */
function lockShard(shard: Shard, note: (line: string) => void): void {
  try {
    const { queue } = inspectDataset(shard.root);
    void queue.close();
    shard.lock = DatasetLock.acquire(shard.root, note);
  } catch (err) {
    throw asShardError(shard, err);
  }
  shard.held = holdIndex(shard.root);
}

/**
 * The problems of `shard`'s verify report that keep it out (see the header): all but those of lines of
 * jobs its queue does not mark done, and a torn last line (then not read again). When verify kept only some
 * of its problems, the others can't be told apart: all count.
 */
async function blockingProblems(shard: Shard): Promise<VerifyProblem[]> {
  const { problems, problemCount, lines } = shard.report!;
  if (problemCount > problems.length) return problems;
  const atLines = new Set(problems.flatMap((p) => (p.line === undefined ? [] : [p.line])));
  const passing = new Set<number>();
  const { queue } = inspectDataset(shard.root);
  try {
    let read = 0;
    for await (const { line, record, unterminated } of readFrameLines(shard.root)) {
      if (++read > lines) break;
      if (!atLines.has(line)) continue;
      if (record ? (await queue.state(record.job)) !== "done" : unterminated && read === lines) passing.add(line);
      if (!record && unterminated && read === lines) shard.linesToRead = lines - 1;
    }
  } finally {
    await queue.close();
  }
  return problems.filter((p) => p.line === undefined || !passing.has(p.line));
}

/** The shard's done jobs into `picks`, and the ids it queued but did not finish. */
function readQueue(shard: Shard, index: number, picks: JobPicks): void {
  const { queue } = inspectDataset(shard.root);
  try {
    for (const { id, spec } of queue.doneJobs()) {
      shard.summary.jobsDone++;
      picks.addDone(index, id, spec);
      if (picks.picks.get(id)!.shard === index) shard.summary.jobsTaken++;
    }
  } finally {
    void queue.close();
  }
  // Jobs not done: SqliteQueue lists done ones only; the columns read here are those isTabfarmQueue requires.
  const db = new Database(path.join(shard.root, QUEUE_FILE), { readonly: true, fileMustExist: true });
  try {
    for (const id of db.prepare(`SELECT id FROM jobs WHERE state <> 'done' ORDER BY seq`).pluck().iterate() as IterableIterator<string>) picks.addNotDone(id);
  } finally {
    db.close();
  }
}

/**
 * One pass over each shard's verified lines: frames taken and dropped, the shard's class table
 * (manifest.json's and its lines': a frame may hold a class the manifest had not recorded), and how many
 * jobs taken from it are randomized.
 */
async function countLines(shards: Shard[], picks: JobPicks, signal: AbortSignal | undefined): Promise<{ frames: Map<string, number>; randomizedJobs: number[] }> {
  const frames = new Map<string, number>();
  const randomizedJobs = shards.map(() => 0);
  for (const pick of picks.picks.values()) if (pick.randomized) randomizedJobs[pick.shard]!++;
  for (const [i, shard] of shards.entries()) {
    const table = new Map<number, string>();
    for (const entry of shard.manifest?.classes ?? []) table.set(entry.id, entry.label);
    for await (const { record } of verifiedLines(shard.root, { lines: shard.linesToRead!, identity: shard.held!.identity })) {
      signal?.throwIfAborted();
      const takenFrom = picks.picks.get(record.job)?.shard;
      if (takenFrom !== i && !picks.alsoDoneIn.get(record.job)?.includes(i)) {
        shard.summary.unfinishedDropped++; // not done here: its classes are not this shard's table's either
        continue;
      }
      for (const entry of frameClasses(record)) if (!table.has(entry.id)) table.set(entry.id, entry.label); // verify: one id, one label
      if (takenFrom === i) {
        shard.summary.framesTaken++;
        frames.set(record.job, (frames.get(record.job) ?? 0) + 1);
      } else shard.summary.duplicatesDropped++;
    }
    shard.classes = [...table].map(([id, label]) => ({ id, label }));
  }
  return { frames, randomizedJobs };
}

function mergeReport(
  shards: Shard[], picks: JobPicks, frames: Map<string, number>, classes: ClassEntry[], seed: number | undefined, options: MergeOptions, into: Into | undefined,
): MergeReport {
  const overlapExamples: string[] = [];
  let overlapFrames = 0;
  for (const [id, later] of picks.alsoDoneIn) {
    overlapFrames += (frames.get(id) ?? 0) * later.length;
    if (overlapExamples.length < IDS_LISTED) {
      overlapExamples.push(`${id} (taken from ${shards[picks.picks.get(id)!.shard]!.given}; also in ${later.map((i) => shards[i]!.given).join(", ")})`);
    }
  }
  const leftOut = picks.leftOut();
  return {
    ...(into ? { into: into.real } : {}),
    dryRun: options.dryRun ?? false,
    linked: options.link ?? false,
    shards: shards.map((s) => s.summary),
    jobs: picks.picks.size,
    frames: shards.reduce((n, s) => n + s.summary.framesTaken, 0),
    overlapping: { count: picks.alsoDoneIn.size, frames: overlapFrames, examples: overlapExamples },
    leftOut: { count: leftOut.length, ids: leftOut.slice(0, IDS_LISTED) },
    classes,
    ...(seed !== undefined ? { seed } : {}),
    notes: [],
  };
}

let tabfarmVersion: string | undefined;
function ownVersion(): string {
  try {
    tabfarmVersion ??= String(JSON.parse(fs.readFileSync(path.join(import.meta.dirname, "../../package.json"), "utf8")).version);
  } catch {
    tabfarmVersion = "unknown";
  }
  return tabfarmVersion;
}

/** The merged manifest.json: see the header. The merge is a run of its own, so a resume keeps its record. */
function mergedManifest(shards: Shard[], report: MergeReport, template: TemplateEntry | undefined, now: string): RunManifestData {
  const mergeRun: RunEntry & { merged_from: object[] } = {
    started: now,
    ended: now,
    options: { command: "merge", shards: shards.map((s) => s.root), link: report.linked },
    browsers: [],
    counts: { jobs_total: report.jobs, jobs_done: report.jobs, jobs_failed: 0, frames: report.frames },
    merged_from: shards.map((s) => ({
      shard: s.root, jobs_taken: s.summary.jobsTaken, frames_taken: s.summary.framesTaken, duplicates_dropped: s.summary.duplicatesDropped,
      ...(s.summary.unfinishedDropped ? { unfinished_dropped: s.summary.unfinishedDropped } : {}),
      ...(s.summary.classMoves.length ? { classes_moved: s.summary.classMoves } : {}),
    })),
  };
  return {
    format: "tabfarm-manifest",
    version: 1,
    tabfarm: ownVersion(),
    created: now,
    updated: now,
    layers: mergeLayers(shards.map((s) => s.manifest?.layers ?? {})) as RunManifestData["layers"],
    classes: report.classes,
    ...(report.seed !== undefined ? { seed: report.seed } : {}),
    ...(template ? { template } : {}),
    runs: [...shards.flatMap((s) => (s.manifest?.runs ?? []).map((run) => ({ ...run, shard: s.root }))), mergeRun],
  };
}

/** Rejects with the abort reason once `signal` is aborted. */
function raceAbort<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Writes the merged dataset into a staging folder beside DIR and renames it to DIR; on any failure removes what it wrote. */
async function writeMerged(shards: Shard[], picks: JobPicks, moves: Map<number, number>[], manifest: RunManifestData, into: Into, options: MergeOptions): Promise<void> {
  const note = options.note ?? (() => {});
  const created = createFolders(into.missingParents, into.given, "--into");
  let staging: string | undefined;
  let done = false;
  try {
    try {
      // Not mkdtemp: its folder is private (0700), and DIR keeps the staging folder's mode.
      const name = path.join(path.dirname(into.real), `${STAGING_PREFIX}${process.pid}-${randomBytes(4).toString("hex")}`);
      fs.mkdirSync(name);
      staging = name;
    } catch (err) {
      throw new MergeRefused(`--into ${into.given}: cannot write in ${path.dirname(into.real)}: ${(err as Error).message}`);
    }
    writeManifest(staging);
    fs.mkdirSync(path.join(staging, IMAGES_DIR));
    note(`merge: ${options.link ? "linking" : "copying"} ${manifest.runs.at(-1)!.counts!.frames} frame(s) into ${into.real} …`);
    await copyFrames(shards, picks, moves, staging, options);
    await writeQueue(shards, picks, staging);
    writeSmallFile(path.join(staging, RUN_MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
    options.signal?.throwIfAborted();
    try {
      fs.renameSync(staging, into.real); // an empty DIR is replaced; one filled meanwhile is not
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOTEMPTY" || code === "EEXIST") throw new MergeRefused(`--into ${into.given}: files appeared in it during the merge; nothing was written there`);
      throw new MergeRefused(`--into ${into.given}: cannot move the merged dataset into place: ${(err as Error).message}`);
    }
    done = true;
  } finally {
    if (!done) {
      if (staging) fs.rmSync(staging, { recursive: true, force: true });
      removeCreatedFolders(created);
    }
  }
}

/** frames.jsonl and the files of every line taken, shard by shard in file order; lines written in that order. */
async function copyFrames(shards: Shard[], picks: JobPicks, moves: Map<number, number>[], staging: string, options: MergeOptions): Promise<void> {
  const index = fs.openSync(path.join(staging, FRAMES_INDEX), "wx");
  const jobFolders = new Set<string>();
  try {
    for (const [i, shard] of shards.entries()) {
      const move = moves[i]!;
      const pending: Promise<string>[] = [];
      const flush = async (keep: number) => {
        while (pending.length > keep) fs.writeSync(index, (await pending.shift()!) + "\n");
      };
      try {
        for await (const { record, text } of verifiedLines(shard.root, { lines: shard.linesToRead!, identity: shard.held!.identity })) {
          options.signal?.throwIfAborted();
          if (picks.picks.get(record.job)?.shard !== i) continue;
          if (!jobFolders.has(record.job)) {
            fs.mkdirSync(path.join(staging, IMAGES_DIR, record.job)); // a safe name: verify checked the line's job id
            jobFolders.add(record.job);
          }
          const line = copyLine(shard, record, text, move, staging, options.link ?? false);
          line.catch(() => {}); // awaited in order by flush: one failing while an earlier one is awaited is not unhandled
          pending.push(line);
          await flush(PARALLEL_LINES);
        }
        await flush(0);
      } finally {
        await Promise.allSettled(pending); // nothing still writing when the staging folder is removed
      }
    }
  } finally {
    fs.closeSync(index);
  }
}

/** Copies (or links) one line's files; returns its line, rewritten only when its classes move. */
async function copyLine(shard: Shard, record: FrameRecord, text: string, move: ReadonlyMap<number, number>, staging: string, link: boolean): Promise<string> {
  const where = `shard ${shard.given}: job ${record.job} frame ${record.frame}`;
  for (const { layer, path: relative } of recordFiles(record)) {
    const parts = relative.split("/");
    if (parts.length !== 3 || parts[0] !== IMAGES_DIR || parts[1] !== record.job) {
      throw new MergeRefused(`${where}: its ${layer} file ${relative} is not in its job's folder ${IMAGES_DIR}/${record.job}/ (tabfarm writes a job's files there; merge keeps that layout)`);
    }
    const target = path.join(staging, relative);
    try {
      if (layer === "class" && move.size > 0) await writeMovedClasses(shard.root, relative, target, move);
      else if (link) linkFile(shard.root, relative, target);
      else await fsp.writeFile(target, await readDatasetFile(shard.root, relative), { flag: "wx" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new MergeRefused(`${where}: its ${layer} file ${relative} is named by another line too; each file belongs to one frame`);
      if (err instanceof MergeRefused) throw err;
      throw new Error(`${where}: ${relative}: ${(err as Error).message}`);
    }
  }
  const moved = moveLineClasses(record, move);
  return moved ? JSON.stringify(moved) : text;
}

/** A class image with its ids moved: decoded, moved, encoded again as a 16-bit grey PNG (lossless). */
async function writeMovedClasses(root: string, relative: string, target: string, move: ReadonlyMap<number, number>): Promise<void> {
  const bytes = await readDatasetFile(root, relative);
  const { data, info } = await sharp(bytes).toColourspace("grey16").raw({ depth: "ushort" }).toBuffer({ resolveWithObject: true });
  const samples = new Uint16Array(info.width * info.height);
  Buffer.from(samples.buffer).set(data.subarray(0, samples.byteLength));
  const png = moveClassPixels(samples, move) ? await encodeGrey16Png(samples, info.width, info.height) : bytes;
  await fsp.writeFile(target, png, { flag: "wx" });
}

/**
 * Hard-links a shard's file: its folders must be real folders (not links), and what got linked must be a
 * regular file: link(2) links a symbolic link itself, so a link at the file's name shows up here and is refused.
 */
function linkFile(root: string, relative: string, target: string): void {
  const parts = relative.split("/");
  for (let i = 1; i < parts.length; i++) {
    const folder = path.join(root, ...parts.slice(0, i));
    if (!fs.lstatSync(folder).isDirectory()) throw new MergeRefused(`${folder}: is not a folder (a link?); merge follows no links out of a shard`);
  }
  try {
    fs.linkSync(path.join(root, relative), target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EXDEV") throw new MergeRefused(`--link: ${path.join(root, relative)} is on another file system than --into; leave out --link to copy`);
    throw err;
  }
  if (!fs.lstatSync(target).isFile()) {
    fs.rmSync(target, { force: true });
    throw new MergeRefused(`${path.join(root, relative)}: is not a regular file (a link?); merge follows no links out of a shard`);
  }
}

/** queue.sqlite: every job taken, with its shard's spec, marked done (taken and completed through the queue itself). */
async function writeQueue(shards: Shard[], picks: JobPicks, staging: string): Promise<void> {
  const queue = new SqliteQueue(path.join(staging, QUEUE_FILE));
  try {
    for (const [i, shard] of shards.entries()) {
      const source = inspectDataset(shard.root).queue;
      try {
        const taken = function* () {
          for (const { id, spec } of source.doneJobs()) if (picks.picks.get(id)?.shard === i) yield JSON.parse(spec) as JobSpec;
        };
        await queue.add(taken());
      } catch (err) {
        if (!(err instanceof CaseCollisionError)) throw err;
        throw new MergeRefused(
          `job ${err.id} (shard ${shard.given}) and job ${err.queuedId} (shard ${shards[picks.picks.get(err.queuedId)!.shard]!.given}): ` +
            `their ids differ only by case, and ids are folder names (one folder on macOS and Windows): give one of them another id`,
        );
      } finally {
        await source.close();
      }
    }
    let marked = 0;
    for (let lease = await queue.take("merge"); lease; lease = await queue.take("merge")) {
      if (!(await queue.complete(lease.token))) throw new Error(`${QUEUE_FILE}: job ${lease.job.id} could not be marked done`);
      marked++;
    }
    if (marked !== picks.picks.size) throw new Error(`${QUEUE_FILE}: ${marked} job(s) marked done, expected ${picks.picks.size}`);
  } finally {
    await queue.close();
  }
}
