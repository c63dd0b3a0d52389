// One pino logger per process. Asynchronous writes keep logging off the admission hot
// path; flush() runs before exit so no line is lost.

import pino, { type Logger } from 'pino'

export type { Logger }

export function createLogger(level = process.env.ENLIST_LOG_LEVEL ?? 'info', dest: number | string = 1): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest, sync: false, minLength: 0 }),
  )
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
