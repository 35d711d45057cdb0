/**
 * Client registry on MongoDB (collection `clients`, the client id as `_id`). Documents are validated
 * with the configuration's own client schema when read, so a hand-edited document cannot smuggle in
 * what the configuration file would refuse; invalid ones are reported and skipped.
 */
import { type Collection, MongoClient, MongoServerError } from "mongodb";
import type { Logger } from "pino";
import { z } from "zod";
import type { ClientSource, StoredClient } from "../auth/clients.ts";
import { clientFieldsSchema } from "../config.ts";

type ClientDoc = Omit<StoredClient, "id"> & { _id: string };

const storedSchema = clientFieldsSchema.extend({
  disabled: z.boolean().default(false),
  certPem: z.string().includes("-----BEGIN CERTIFICATE-----").optional(),
  keySealed: z.string().optional(),
  createdAt: z.number(),
  updatedAt: z.number(),
});

const DUPLICATE_KEY = 11000;

/** Creates the MongoDB client source (connects lazily). */
export function createMongoClientSource(
  url: string,
  opts: { log?: Logger; timeoutMs?: number } = {},
): ClientSource {
  const client = new MongoClient(url, {
    serverSelectionTimeoutMS: opts.timeoutMs ?? 2_000,
    connectTimeoutMS: opts.timeoutMs ?? 2_000,
  });
  let collection: Promise<Collection<ClientDoc>> | undefined;
  const clients = (): Promise<Collection<ClientDoc>> => {
    collection ??= client
      .connect()
      .then(() => client.db().collection<ClientDoc>("clients"))
      .catch((err: unknown) => {
        collection = undefined;
        throw err;
      });
    return collection;
  };

  function parse(doc: ClientDoc): StoredClient | undefined {
    const { _id, ...rest } = doc;
    const r = storedSchema.safeParse({ id: _id, ...rest });
    if (r.success) return r.data as StoredClient;
    opts.log?.error(
      { clientId: _id, problems: r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) },
      "invalid client document in MongoDB: skipped",
    );
    return undefined;
  }

  return {
    async list() {
      const docs = await (await clients()).find({}).sort({ _id: 1 }).toArray();
      return docs.flatMap((d) => parse(d) ?? []);
    },
    async get(id) {
      const d = await (await clients()).findOne({ _id: id });
      return d ? parse(d) : undefined;
    },
    async insert(c) {
      const { id, ...rest } = c;
      try {
        await (await clients()).insertOne({ _id: id, ...rest });
        return true;
      } catch (err) {
        if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) return false;
        throw err;
      }
    },
    async update(id, change) {
      const r = await (await clients()).updateOne({ _id: id }, { $set: change });
      return r.matchedCount === 1;
    },
    async ping() {
      await (await clients()).db.command({ ping: 1 });
    },
    async close() {
      await client.close();
    },
  };
}
