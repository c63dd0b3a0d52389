// One pino logger per process. Lines are batched (a syscall per 4 KiB, not per line) to
// keep logging off the admission hot path; a timer flushes quiet periods within 250 ms,
// and flush() runs before exit so no line is lost.
//
// The batches are written synchronously, as klog does: an asynchronous write goes through
// libuv's thread pool, and on one core the hand-offs cost about 20 µs per admission with
// stdout a pipe (bench/, docs/benchmarks.md), more than enlist's own work on the fast path.

import pino, { type Logger } from 'pino'

export type { Logger }

export function createLogger(level = process.env.ENLIST_LOG_LEVEL ?? 'info', dest: number | string = 1): Logger {
  const logger = pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest, sync: true, minLength: 4096 }),
  )
  setInterval(() => logger.flush(), 250).unref()
  return logger
}

// pino's isoTime formats a new Date for every line; under load several lines share each
// millisecond, and the formatting was a visible share of a logged admission.
let lastMs = -1
let lastTime = ''
export function isoTime(): string {
  const now = Date.now()
  if (now !== lastMs) {
    lastMs = now
    lastTime = `,"time":"${new Date(now).toISOString()}"`
  }
  return lastTime
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
