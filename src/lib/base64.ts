// Base64 of a string's UTF-8 bytes through one reused buffer. Buffer.from would allocate
// a new one for every patch (they outgrow Node's 4 KiB allocation pool) only to drop it
// at once. Safe to share: the encoding is synchronous and nothing keeps the buffer.
const scratch = Buffer.allocUnsafe(64 * 1024)

export function utf8ToBase64(s: string): string {
  // no UTF-16 code unit takes more than 3 bytes in UTF-8
  if (s.length * 3 > scratch.length) return Buffer.from(s, 'utf8').toString('base64')
  const n = scratch.write(s, 0, 'utf8')
  return scratch.toString('base64', 0, n)
}
