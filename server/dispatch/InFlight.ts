// Keeps up to `limit` promises running; the first failure is rethrown by add() or drain().
export class InFlight {
  private running = new Set<Promise<unknown>>();
  private failure: { error: unknown } | null = null;

  constructor(private readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError(`InFlight limit must be at least 1, got ${limit}`);
  }

  async add(task: Promise<unknown>): Promise<void> {
    if (this.failure) {
      task.catch(() => {}); // already failing: this task's own rejection must not go unhandled
      this.throwIfFailed();
    }
    const tracked = task.then(
      () => void this.running.delete(tracked),
      (error) => {
        this.running.delete(tracked);
        this.failure ??= { error };
      },
    );
    this.running.add(tracked);
    while (this.running.size >= this.limit) await Promise.race(this.running);
    this.throwIfFailed();
  }

  async drain(): Promise<void> {
    await Promise.all(this.running);
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }
}
