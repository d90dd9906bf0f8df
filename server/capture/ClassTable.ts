// The run's class table: label → class id for the class layer and frames' `instances`. Given in the
// options (--classes) or empty; a label not in it gets the next free id the first time a grab sees it,
// and `onAdd` lets the dataset writer record the new entry in manifest.json. One table per Farm, shared
// by all its sessions, so a label has the same class in every frame of a run.
import { MAX_ID } from "../../protocol/layers.js";

export interface ClassEntry {
  id: number;
  label: string;
}

export class ClassTable {
  private readonly byLabel = new Map<string, number>();
  private readonly byId = new Map<number, string>();
  /** The lowest id that may be free (ids below it are all taken). */
  private nextFree = 1;
  /** Called (synchronously) when a label gets a new id. */
  onAdd?: (entry: ClassEntry) => void;

  /** `initial`: [label, id] pairs; ids 1..65535, no id or label twice (an Error names the offender). */
  constructor(initial?: Iterable<[label: string, id: number]>) {
    for (const [label, id] of initial ?? []) {
      if (typeof label !== "string") throw new Error(`class table: label ${String(JSON.stringify(label)).slice(0, 60)} is not a string`);
      if (!Number.isInteger(id) || id < 1 || id > MAX_ID) throw new Error(`class table: '${label}' has id ${String(id)}; ids are whole numbers from 1 to ${MAX_ID} (0 is unlabelled)`);
      if (this.byLabel.has(label)) throw new Error(`class table: label '${label}' is given twice (ids ${this.byLabel.get(label)} and ${id})`);
      const other = this.byId.get(id);
      if (other !== undefined) throw new Error(`class table: id ${id} is given to both '${other}' and '${label}'`);
      this.byLabel.set(label, id);
      this.byId.set(id, label);
    }
  }

  /** The class of `label`, giving it the lowest free id on first sight; throws when all 65535 are taken. */
  classOf(label: string): number {
    const known = this.byLabel.get(label);
    if (known !== undefined) return known;
    while (this.byId.has(this.nextFree)) this.nextFree++;
    if (this.nextFree > MAX_ID) throw new Error(`class table: no class id left for label '${label.slice(0, 100)}' (all ${MAX_ID} are taken)`);
    const entry = { id: this.nextFree, label };
    this.byLabel.set(label, entry.id);
    this.byId.set(entry.id, label);
    this.onAdd?.(entry);
    return entry.id;
  }

  /** Every entry, by id. */
  entries(): ClassEntry[] {
    return [...this.byId].sort((a, b) => a[0] - b[0]).map(([id, label]) => ({ id, label }));
  }
}
