// One pino logger per process. Writes are asynchronous and batched (a syscall per 4 KiB,
// not per line) to keep logging off the admission hot path; a timer flushes quiet
// periods within 250 ms, and flush() runs before exit so no line is lost.

import pino, { type Logger } from 'pino'

export type { Logger }

export function createLogger(level = process.env.ENLIST_LOG_LEVEL ?? 'info', dest: number | string = 1): Logger {
  const logger = pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest, sync: false, minLength: 4096 }),
  )
  setInterval(() => logger.flush(), 250).unref()
  return logger
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
