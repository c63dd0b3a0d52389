#!/usr/bin/env node
// Counts tests from the TAP that tap saved per file (.tap/test-results): a test is a
// leaf subtest (a t.test with no nested t.test) or an assertion made outside any
// subtest. A file that failed without a failing test, or left no TAP at all (it crashed
// while loading), counts as one failure; so does tap failing (its exit status, the second
// argument) when nothing else was counted. Ends with the line "tests: N passed, M failed".

import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { Parser } from 'tap-parser'

const root = process.argv[2] ?? '.tap/test-results'
const tapStatus = Number(process.argv[3] ?? 0)

function files(dir) {
  let out = []
  let entries = []
  try {
    entries = readdirSync(dir)
  } catch {
    return out
  }
  for (const e of entries) {
    const p = join(dir, e)
    if (statSync(p).isDirectory()) out = out.concat(files(p))
    else if (p.endsWith('.tap')) out.push(p)
  }
  return out.sort()
}

let passed = 0
let failed = 0
let skipped = 0
const failures = []

for (const file of files(root)) {
  const name = relative(root, file).replace(/\.tap$/, '')
  let fileFailed = 0
  const count = (res, path) => {
    if (res.skip || res.todo) skipped++
    else if (res.ok) passed++
    else {
      failed++
      fileFailed++
      failures.push(`${name}: ${[...path, res.name].filter(Boolean).join(' > ')}`)
    }
  }
  const attach = (parser, path, depth) => {
    let lastChild = null
    parser.on('child', (child) => {
      lastChild = { hasChildren: false }
      const state = lastChild
      child.on('child', () => (state.hasChildren = true))
      attach(child, [...path, child.name], depth + 1)
    })
    parser.on('assert', (res) => {
      if (res.closingTestPoint) {
        if (lastChild && !lastChild.hasChildren) count(res, path)
      } else if (depth === 0) count(res, path)
    })
  }
  const text = readFileSync(file, 'utf8')
  const parser = new Parser()
  attach(parser, [], 0)
  let final = null
  parser.on('complete', (r) => (final = r))
  parser.end(text)
  const crashed = text.trim() === '' || !final || final.plan?.end === undefined || final.plan.end === null
  if (fileFailed === 0 && (crashed || !final.ok)) {
    failed++
    failures.push(`${name}: ${crashed ? 'produced no complete TAP (it crashed, see above)' : 'failed outside any test'}${final?.bailout ? ` (bail out: ${final.bailout})` : ''}`)
  }
}

if (tapStatus !== 0 && failed === 0) {
  failed++
  failures.push(`tap exited ${tapStatus} without a failing test counted: see its output above`)
}
if (failures.length > 0) {
  console.log('\nfailed:')
  for (const f of failures) console.log(`  ${f}`)
}
if (skipped > 0) console.log(`(${skipped} skipped)`)
console.log(`tests: ${passed} passed, ${failed} failed`)
