// The registrar's environment: what admission writes into the enlist-registrar init
// container (src/admission/inject.ts) and `enlist register` reads back (src/cli/register.ts).
// Registration parameters are deliberately not among them: the registration API takes
// those from the sealed enlist.io/status only (src/decision/). The registrar also gets
// every Downward-API variable (POD_NAME, POD_NAMESPACE, ...), and names its pod in its log
// lines with them.

import { TOKEN_MOUNT_PATH } from '../names.js'

export const ENV_REGISTRATION_URL = 'ENLIST_REGISTRATION_URL'
export const ENV_CA_BUNDLE = 'ENLIST_CA_BUNDLE'
export const ENV_TOKEN_FILE = 'ENLIST_TOKEN_FILE'
export const ENV_TIMEOUT_SECONDS = 'ENLIST_TIMEOUT_SECONDS'

/** The file in the projected token volume, and its path in the registrar. */
export const TOKEN_FILE_NAME = 'token'
export const TOKEN_FILE = `${TOKEN_MOUNT_PATH}/${TOKEN_FILE_NAME}`

export interface EnvEntry {
  name: string
  value: string
}

/** The entries every pod of one policy (and CA bundle) gets, in order. */
export function registrarFixedEnv(registrationURL: string, caBundle: string): EnvEntry[] {
  return [
    { name: ENV_REGISTRATION_URL, value: registrationURL },
    { name: ENV_TOKEN_FILE, value: TOKEN_FILE },
    ...(caBundle ? [{ name: ENV_CA_BUNDLE, value: caBundle }] : []),
  ]
}

/** The entry that differs per pod (enlist.io/registrar-timeout): a bare number of seconds. */
export function registrarTimeoutEnv(seconds: number): EnvEntry {
  return { name: ENV_TIMEOUT_SECONDS, value: String(seconds) }
}
