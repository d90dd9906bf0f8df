// Holds every session of a run at its first take until the bench opens the gate, so a timed farm
// phase starts with all sessions connected (tabs that connect early would otherwise start alone).
// The wrapper sits on this run's queue object only; the queue itself is unchanged.
import type { JobQueue } from "../server/queue/JobQueue.js";

export function gateTakes(queue: JobQueue): { open(): void; firstTakeAt(): number | undefined } {
  const realTake = queue.take.bind(queue);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let first: number | undefined;
  queue.take = async (owner) => {
    await gate;
    const lease = await realTake(owner);
    if (lease && first === undefined) first = performance.now();
    return lease;
  };
  return { open, firstTakeAt: () => first };
}
