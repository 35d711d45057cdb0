# eProxy production image: Node.js 24 LTS, runs the TypeScript sources directly (type stripping).
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The `node` devDependency only pins Node for development machines: production installs skip it.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY gen ./gen
USER node
EXPOSE 8443
ENTRYPOINT ["node", "bin/eproxy.js"]
CMD ["serve", "--config", "/etc/eproxy/eproxy.yaml"]
