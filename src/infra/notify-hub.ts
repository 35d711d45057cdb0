/**
 * Local dispatch of store notifications (`AuthStore.notify`/`subscribe`): the listeners of each
 * topic in this process. The memory store feeds it directly, the Redis store from its pub/sub
 * connection.
 */
import type { NotifyListener } from "../auth/store.ts";

/** The listeners of each topic. */
export interface NotifyHub {
  /** Adds a listener (the same function may be added twice); returns its own remover. */
  add(topic: string, listener: NotifyListener): () => void;
  /** Whether anyone listens to `topic`. */
  has(topic: string): boolean;
  /** Calls the listeners of `topic`. */
  emit(topic: string, message: string | undefined): void;
  clear(): void;
}

/** Creates an empty hub. */
export function createNotifyHub(): NotifyHub {
  const topics = new Map<string, Set<NotifyListener>>();
  return {
    add(topic, listener) {
      const set = topics.get(topic) ?? new Set<NotifyListener>();
      topics.set(topic, set);
      // A wrapper per subscription, so that removing one leaves the other.
      const own: NotifyListener = (m) => listener(m);
      set.add(own);
      return () => {
        set.delete(own);
        if (set.size === 0 && topics.get(topic) === set) topics.delete(topic);
      };
    },
    has: (topic) => topics.has(topic),
    emit(topic, message) {
      for (const l of topics.get(topic) ?? []) l(message);
    },
    clear: () => topics.clear(),
  };
}
