import { BootstrapRequestSchema, BootstrapResponseSchema } from '@cgrpo/contract';
import { createRoute } from '@hono/zod-openapi';
import { eq } from 'drizzle-orm';
import { accounts } from '../db/schema';
import { isProduction } from '../env';
import { ApiError } from '../errors';
import { iso, newId } from '../ids';
import { errors, json, jsonBody, router } from '../openapi';
import { createKey } from './account';

// Creating the first account of a deployment. Under `wrangler dev` (ENVIRONMENT=development, a
// loopback client) it is open, which is how `npm start` gets the local admin key; anywhere else it
// needs the BOOTSTRAP_TOKEN secret. Calling it again for an existing handle issues fresh keys.

export const bootstrap = router();

bootstrap.openapi(
  createRoute({
    method: 'post',
    path: '/bootstrap',
    tags: ['account'],
    summary: 'Create (or re-key) an account: open in development, otherwise needs the BOOTSTRAP_TOKEN secret',
    request: { body: jsonBody(BootstrapRequestSchema) },
    responses: { 201: json(BootstrapResponseSchema, 'The account and its new keys (shown once)'), ...errors },
  }),
  async (c) => {
    const token = c.env.BOOTSTRAP_TOKEN;
    const given = c.req.header('authorization')?.replace(/^Bearer\s+/i, '');
    // Cloudflare's edge sets CF-Connecting-IP to the client's address; locally it is absent or
    // loopback. So a deployment that kept ENVIRONMENT=development is still not open to the internet.
    const client = c.req.header('cf-connecting-ip');
    const local = client === undefined || /^(127\.|::1$|::ffff:127\.)/.test(client);
    const allowed =
      (!isProduction(c.env) && local) || (token !== undefined && token.length >= 16 && given === token);
    if (!allowed) {
      throw new ApiError(
        403,
        'forbidden',
        'bootstrap needs Authorization: Bearer <BOOTSTRAP_TOKEN> outside development',
      );
    }
    const { handle, name } = c.req.valid('json');
    const db = c.get('db');
    await db
      .insert(accounts)
      .values({ id: newId('acct'), handle, name, createdAt: Date.now() })
      .onConflictDoNothing({ target: accounts.handle })
      .run();
    const row = (await db.select().from(accounts).where(eq(accounts.handle, handle)).get())!;
    const apiKey = await createKey(db, row.id, 'api', 'bootstrap admin key');
    const registrationKey = await createKey(db, row.id, 'registration', 'bootstrap runner registration key');
    return c.json(
      {
        account: { id: row.id, name: row.name, handle: row.handle, created_at: iso(row.createdAt)! },
        api_key: apiKey.key,
        registration_key: registrationKey.key,
      },
      201,
    );
  },
);
