#!/usr/bin/env node
// The `enlist` command.

import { EnlistError, errorMessage, OptionError } from '../lib/errors.js'

const USAGE = `usage: enlist COMMAND [flags]

commands:
  serve                 run the webhook, the registration API and the controller
  register              register this pod (the enlist-registrar init container)
  render -f FILE        print a manifest with enlist injected (offline preview)
  policy validate FILE  check a policy file or policy ConfigMap manifest
  policy schema         print the policy's JSON Schema
  certs                 make a CA and serving certificate (make certs)
  relay                 apply registration events from NATS or RabbitMQ to an HTTP CMDB
  status                is the registry true? the leader's last sweep, per backend (kubectl enlist status)
  sweep --adopt-unmarked --backend NAME
                        adopt a shared backend's unmarked entries as this cluster's (dry run unless --apply)
  claim --backend NAME  who holds this cluster's name in a backend; --take-over takes it over
  version               print the version

Run "enlist COMMAND --help" for a command's flags.`

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  switch (cmd) {
    case 'serve':
      await (await import('./serve.js')).serve(rest)
      return -1 // keeps running; exits on a signal
    case 'register':
      return (await import('./register.js')).registerCommand(rest)
    case 'render':
      return (await import('./render.js')).renderCommand(rest)
    case 'policy':
      return (await import('./policy.js')).policyCommand(rest)
    case 'certs':
      return (await import('./certs.js')).certsCommand(rest)
    case 'relay':
      return (await import('./relay.js')).relayCommand(rest)
    case 'status':
      return (await import('./status.js')).statusCommand(rest)
    case 'sweep':
      return (await import('./sweep.js')).sweepCommand(rest)
    case 'claim':
      return (await import('./claim.js')).claimCommand(rest)
    case 'version':
    case '--version': {
      const { VERSION } = await import('../version.js')
      console.log(VERSION)
      return 0
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE)
      return cmd === undefined ? 2 : 0
    default:
      throw new OptionError(`unknown command ${JSON.stringify(cmd)}\n\n${USAGE}`)
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code
  },
  (err: unknown) => {
    if (err instanceof OptionError) {
      console.error(`enlist: ${err.message}`)
      process.exitCode = 2
    } else if (err instanceof EnlistError) {
      console.error(`enlist: ${err.message}`)
      process.exitCode = 1
    } else {
      console.error(`enlist: ${errorMessage(err)}`)
      if (err instanceof Error && err.stack) console.error(err.stack)
      process.exitCode = 1
    }
  },
)
