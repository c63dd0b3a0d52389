#!/usr/bin/env node
// Counts tests from the TAP that tap saved per file (.tap/test-results): a test is a
// leaf subtest (a t.test with no nested t.test) or an assertion made outside any
// subtest. A file that failed without a failing test (a crash) counts as one failure.
// Ends with the line "tests: N passed, M failed".

import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { Parser } from 'tap-parser'

const root = process.argv[2] ?? '.tap/test-results'

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
  const parser = new Parser()
  attach(parser, [], 0)
  let final = null
  parser.on('complete', (r) => (final = r))
  parser.end(readFileSync(file, 'utf8'))
  if (final && !final.ok && fileFailed === 0) {
    failed++
    failures.push(`${name}: failed outside any test${final.bailout ? ` (bail out: ${final.bailout})` : ''}`)
  }
}

if (failures.length > 0) {
  console.log('\nfailed:')
  for (const f of failures) console.log(`  ${f}`)
}
if (skipped > 0) console.log(`(${skipped} skipped)`)
console.log(`tests: ${passed} passed, ${failed} failed`)
