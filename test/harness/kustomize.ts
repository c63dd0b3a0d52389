// Renders a kustomization with kustomize v5 (kubectl v1.33 from hack/kustomize.sh, fetched
// once and cached): the manifests use Components and `labels`, which the kustomize inside
// the test apiserver's kubectl v1.20 cannot render. Applying stays with the cluster's kubectl.

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)
const REPO = new URL('../../', import.meta.url).pathname
let kubectl: Promise<string> | undefined

/** The kubectl whose built-in kustomize is v5 (hack/kustomize.sh; ENLIST_KUSTOMIZE_KUBECTL overrides). */
export function kustomizeKubectl(): Promise<string> {
  kubectl ??= run(`${REPO}hack/kustomize.sh`, { maxBuffer: 1 << 20 }).then((r) => r.stdout.trim().split('\n').pop()!)
  return kubectl
}

/** `kubectl kustomize DIR` with kustomize v5; never throws: look at code. */
export async function kustomize(dir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(await kustomizeKubectl(), ['kustomize', dir], { maxBuffer: 64 << 20 })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string; message: string }
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr || e.message }
  }
}
