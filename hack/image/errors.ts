// Why an image could not be built, by code: callers branch on `code`, people read `message`.

export type ImageErrorCode =
  | 'IMAGE_BASE_FAILED' // mmdebstrap could not assemble the Debian base
  | 'IMAGE_INPUT_MISSING' // dist/, the lockfile or a binary the image needs is absent
  | 'IMAGE_NODE_VERSION' // the Node.js binary is not the major version the image promises
  | 'IMAGE_WRITE_FAILED' // a layer or the archive could not be written
  | 'IMAGE_INVALID' // an archive read back is not a well-formed OCI image

export class ImageError extends Error {
  readonly code: ImageErrorCode

  constructor(code: ImageErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'ImageError'
    this.code = code
  }
}
