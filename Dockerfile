# syntax=docker/dockerfile:1
# One image serves the webhook (`serve`) and runs the registrar (`register`).
# Runs as a numeric non-root user with a read-only root filesystem: it writes nothing.
# Without a container engine, `make image` builds the same image from Debian's packages
# (hack/image/); test/e2e/image.test.ts holds the two to the same files, user and entrypoint.

ARG NODE_VERSION=24

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/compile-policy-validator.mjs ./scripts/
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# distroless: Node.js 24 LTS and nothing else (no shell, no package manager)
FROM gcr.io/distroless/nodejs${NODE_VERSION}-debian12:nonroot
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
ENV NODE_ENV=production
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/cli/main.js"]
CMD ["serve"]
