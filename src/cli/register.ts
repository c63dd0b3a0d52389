export async function registerCommand(_argv: readonly string[]): Promise<number> {
  console.error('enlist register: not built yet')
  return 1
}
