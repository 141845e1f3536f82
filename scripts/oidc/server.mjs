#!/usr/bin/env node
// storeops's local OpenID provider: panva's oidc-provider (a certified OP), configured as the
// chain's identity provider is for the api: JWT access tokens for the storeops-api audience
// signed with the keys of a JWKS file (several kids; the first key of each alg signs),
// test users signing in through the authorization code flow with PKCE, machine clients
// through client_credentials. Tokens, sessions and grants live in memory: a restart (for a
// key rotation, say) keeps the issuer and the keys' kids, and forgets only sessions.
//
// Usage: node server.mjs --port P --keys jwks.json [--users users.json] [--clients clients.json]
//          [--issuer URL] [--host 127.0.0.1] [--audience storeops-api[,other]] [--scope storeops]
//          [--ttl 300] [--default-alg ALG] [--no-nbf] [--ready-file F] [--verbose]
// Flags only, no environment: `dev-env env` exports STOREOPS_OIDC_ISSUER and friends for the
// dev instance, and a test's own instance must not pick those up. docs/IDENTITY.md
// describes the files and the tokens.
import http from 'node:http';
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { writeFileSync, renameSync } from 'node:fs';

import {
  UsageError, fail, readJson, resourceFor, audienceFor, ASYMMETRIC_ALGS, parseFlags,
} from './lib/common.mjs';

const PROG = 'oidc-server';

const OPTIONS = {
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string' },
  issuer: { type: 'string' },
  keys: { type: 'string' },
  users: { type: 'string' },
  clients: { type: 'string' },
  audience: { type: 'string', multiple: true },
  scope: { type: 'string', default: 'storeops' },
  ttl: { type: 'string', default: '300' },
  'default-alg': { type: 'string' },
  'no-nbf': { type: 'boolean', default: false },
  'ready-file': { type: 'string' },
  verbose: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
};

// The clients when no --clients file is given (docs/IDENTITY.md): a public client for the
// mobile apps' flow (authorization code + PKCE, loopback redirect, as RFC 8252 has native
// apps do) and a confidential machine client, each also in an ES256 variant: like
// Keycloak's per-client "access token signature algorithm", the signing alg is per client.
export const DEFAULT_CLIENTS = [
  {
    client_id: 'storeops-dev',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
  },
  {
    client_id: 'storeops-dev-es256',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    access_token_alg: 'ES256',
  },
  {
    client_id: 'storeops-integration',
    client_secret: 'storeops-integration-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_claims: { role: 'integration' },
  },
  {
    client_id: 'storeops-integration-es256',
    client_secret: 'storeops-integration-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_claims: { role: 'integration' },
    access_token_alg: 'ES256',
  },
];

function parseConfig(argv) {
  const { values } = parseFlags({ args: argv, options: OPTIONS, strict: true });
  if (values.help) {
    process.stdout.write(`${readUsage()}\n`);
    process.exit(0);
  }
  const get = (name) => values[name];
  const int = (name, min, max) => {
    const raw = get(name);
    if (raw === undefined) throw new UsageError(`--${name} is required`);
    if (!/^\d+$/.test(String(raw)) || Number(raw) < min || Number(raw) > max) {
      throw new UsageError(`--${name} must be an integer in ${min}..${max}, not ${raw}`);
    }
    return Number(raw);
  };
  const keysPath = get('keys');
  if (!keysPath) throw new UsageError('--keys <jwks.json with private keys> is required');
  const audiences = (values.audience || ['storeops-api'])
    .flatMap((a) => String(a).split(','))
    .map((a) => a.trim())
    .filter(Boolean);
  if (!audiences.length) throw new UsageError('--audience must name at least one audience');
  const defaultAlg = get('default-alg');
  if (defaultAlg !== undefined && !ASYMMETRIC_ALGS.includes(defaultAlg)) {
    throw new UsageError(`--default-alg must be one of ${ASYMMETRIC_ALGS.join(', ')}`);
  }
  return {
    host: get('host'),
    port: int('port', 0, 65535),
    issuer: get('issuer'),
    keysPath,
    usersPath: get('users'),
    clientsPath: get('clients'),
    audiences,
    scope: String(get('scope')).trim(),
    ttl: int('ttl', 1, 86400),
    defaultAlg,
    nbf: !values['no-nbf'],
    readyFile: get('ready-file'),
    verbose: values.verbose,
  };
}

function readUsage() {
  return `Usage: node server.mjs --port P --keys jwks.json [options]
  --port P            port on --host (0: any free port; the ready file tells which)
  --host H            address to listen on (default 127.0.0.1)
  --issuer URL        issuer identifier (default http://<host>:<port>)
  --keys F            JWKS with the private signing keys; all are published, the first of each alg signs
  --users F           JSON array of accounts: username, sub, email, name, groups, [password], [role, store_id, region], [claims]
  --clients F         JSON array of clients (default: storeops-dev[-es256], storeops-integration[-es256])
  --audience A        accepted audience(s), comma-separated or repeated; the first is the default (storeops-api)
  --scope S           the resource's scopes, space-separated (default "storeops")
  --ttl SECONDS       access and ID token lifetime (default 300)
  --default-alg ALG   access token alg for clients without access_token_alg
                      (default RS256 when the key file has an RS256 key, else the first key's alg)
  --no-nbf            leave nbf out of access tokens (by default nbf = iat)
  --ready-file F      write {"issuer","port","pid"} to F once listening
  --verbose           log every request to stderr`;
}

// ---------------------------------------------------------------------------
// keys, users, clients

function loadKeys(path) {
  const jwks = readJson(path, 'key file');
  if (!jwks || !Array.isArray(jwks.keys) || !jwks.keys.length) {
    throw new UsageError(`key file ${path} must be a JWKS: {"keys": [private JWK, ...]}`);
  }
  const kids = new Set();
  for (const [i, key] of jwks.keys.entries()) {
    if (typeof key.kid !== 'string' || !key.kid) throw new UsageError(`key ${i} in ${path} has no kid`);
    if (kids.has(key.kid)) throw new UsageError(`kid ${key.kid} appears twice in ${path}`);
    kids.add(key.kid);
    if (!key.d) throw new UsageError(`key ${key.kid} in ${path} is not a private key (no "d")`);
    if (key.alg && !ASYMMETRIC_ALGS.includes(key.alg)) {
      throw new UsageError(`key ${key.kid} in ${path}: alg ${key.alg} is not an asymmetric JWS alg`);
    }
  }
  return jwks.keys;
}

// The alg a key signs with: its own "alg", else what its type implies.
function keyAlg(jwk) {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'EC') return { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[jwk.crv];
  if (jwk.kty === 'OKP') return 'EdDSA';
  return undefined;
}

const STOREOPS_CLAIMS = ['role', 'store_id', 'region'];

function loadUsers(path) {
  if (!path) return [];
  const users = readJson(path, 'users file');
  if (!Array.isArray(users)) throw new UsageError(`users file ${path} must be a JSON array`);
  const seen = new Set();
  for (const [i, u] of users.entries()) {
    if (!u || typeof u.sub !== 'string' || !u.sub) throw new UsageError(`user ${i} in ${path} has no sub`);
    for (const ident of [u.sub, u.username, u.email].filter(Boolean).map((s) => s.toLowerCase())) {
      if (seen.has(ident)) throw new UsageError(`user ${u.sub}: "${ident}" names two users in ${path}`);
      seen.add(ident);
    }
    if (u.groups !== undefined && !(Array.isArray(u.groups) && u.groups.every((g) => typeof g === 'string'))) {
      throw new UsageError(`user ${u.sub}: groups must be an array of strings`);
    }
    if (u.claims !== undefined && (typeof u.claims !== 'object' || Array.isArray(u.claims))) {
      throw new UsageError(`user ${u.sub}: claims must be an object`);
    }
  }
  return users;
}

function loadClients(path) {
  const clients = path ? readJson(path, 'clients file') : DEFAULT_CLIENTS;
  if (!Array.isArray(clients) || !clients.length) {
    throw new UsageError(`clients file ${path} must be a non-empty JSON array`);
  }
  return clients;
}

// ---------------------------------------------------------------------------
// the interaction pages (sign-in and consent), in place of oidc-provider's devInteractions
// (which take any login without a password and only a raw accountId)

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} - storeops dev identity provider</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 28em; margin: 3em auto">
<h1>${escapeHtml(title)}</h1>
${body}
</body></html>
`;
}

function loginPage(uid, clientId, error, login = '') {
  return page('Sign in', `${error ? `<p role="alert" style="color:#b00">${escapeHtml(error)}</p>` : ''}
<p>to <strong>${escapeHtml(clientId)}</strong></p>
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<p><label>Username or email <input name="login" value="${escapeHtml(login)}" required autofocus></label></p>
<p><label>Password <input name="password" type="password"></label></p>
<p><button type="submit">Sign in</button></p>
</form>
<p><a href="/interaction/${escapeHtml(uid)}/abort">Cancel</a></p>`);
}

function consentPage(uid, clientId, details) {
  const items = [];
  if (details.missingOIDCScope) items.push(`identity: ${details.missingOIDCScope.join(' ')}`);
  for (const [resource, scopes] of Object.entries(details.missingResourceScopes || {})) {
    items.push(`${audienceFor(resource)}: ${scopes.join(' ')}`);
  }
  return page('Authorize', `<p><strong>${escapeHtml(clientId)}</strong> asks for:</p>
<ul>${items.map((i) => `<li>${escapeHtml(i)}</li>`).join('')}</ul>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm">
<p><button type="submit">Allow</button></p>
</form>
<p><a href="/interaction/${escapeHtml(uid)}/abort">Cancel</a></p>`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16384) throw Object.assign(new Error('form too large'), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendHtml(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
  });
  res.end(html);
}

// Same-length digest compare, so a wrong password's length does not show in the timing.
function passwordMatches(expected, given) {
  const a = createHash('sha256').update(String(expected)).digest();
  const b = createHash('sha256').update(String(given)).digest();
  return timingSafeEqual(a, b);
}

function interactionHandler(provider, users) {
  const byIdent = new Map();
  for (const u of users) {
    for (const ident of [u.sub, u.username, u.email].filter(Boolean)) byIdent.set(ident.toLowerCase(), u);
  }

  return async function handleInteraction(req, res, uid, action) {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) return sendHtml(res, 400, page('Error', '<p>interaction mismatch</p>'));
    const { prompt, params } = details;

    if (req.method === 'GET' && action === '') {
      if (prompt.name === 'login') return sendHtml(res, 200, loginPage(uid, params.client_id));
      if (prompt.name === 'consent') return sendHtml(res, 200, consentPage(uid, params.client_id, prompt.details));
      return sendHtml(res, 501, page('Error', `<p>prompt ${escapeHtml(prompt.name)} is not implemented</p>`));
    }

    if (req.method === 'GET' && action === 'abort') {
      return provider.interactionFinished(req, res, {
        error: 'access_denied', error_description: 'End-User aborted interaction',
      }, { mergeWithLastSubmission: false });
    }

    if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
      const form = await readForm(req);
      const login = (form.get('login') || '').trim();
      const user = byIdent.get(login.toLowerCase());
      // An account with a password needs it; one without (test accounts) takes any.
      if (!user || (user.password !== undefined && !passwordMatches(user.password, form.get('password') || ''))) {
        return sendHtml(res, 401, loginPage(uid, params.client_id, 'Unknown user or wrong password.', login));
      }
      return provider.interactionFinished(req, res, {
        login: { accountId: user.sub, amr: ['pwd'] },
      }, { mergeWithLastSubmission: false });
    }

    if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
      await readForm(req);
      const { grantId, session } = details;
      const grant = grantId
        ? await provider.Grant.find(grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const d = prompt.details;
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
        mergeWithLastSubmission: true,
      });
    }

    return sendHtml(res, 400, page('Error', `<p>${escapeHtml(req.method)} ${escapeHtml(action || '(page)')} does not fit the ${escapeHtml(prompt.name)} step</p>`));
  };
}

// ---------------------------------------------------------------------------
// the provider

function compact(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined && v !== null));
}

async function buildProvider(Provider, errors, cfg, issuer, keys, users, clients) {
  const userBySub = new Map(users.map((u) => [u.sub, u]));
  const audienceSet = new Set(cfg.audiences);
  const signingAlgs = new Set(keys.map(keyAlg).filter(Boolean));
  const idTokenAlg = signingAlgs.has('RS256') ? 'RS256' : keyAlg(keys[0]);
  if (cfg.defaultAlg && !signingAlgs.has(cfg.defaultAlg)) {
    throw new UsageError(`--default-alg ${cfg.defaultAlg}: the key file has no key for it`);
  }
  const defaultAlg = cfg.defaultAlg || idTokenAlg;

  const providerClients = clients.map((c) => {
    const { access_token_alg: alg, token_claims: tokenClaims, ...rest } = c;
    return compact({
      id_token_signed_response_alg: idTokenAlg,
      ...rest,
      access_token_alg: alg,
      token_claims: tokenClaims,
    });
  });

  const provider = new Provider(issuer, {
    clients: providerClients,
    jwks: { keys },
    // Fresh per process: a restart only loses sign-ins in progress.
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      // Lax, not oidc-provider's default None: browsers drop SameSite=None cookies that
      // are not Secure, and this provider speaks plain http on loopback.
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    extraClientMetadata: {
      properties: ['access_token_alg', 'token_claims'],
      validator(ctx, key, value) {
        if (key === 'access_token_alg' && value !== undefined && !ASYMMETRIC_ALGS.includes(value)) {
          throw new errors.InvalidClientMetadata(`access_token_alg must be one of ${ASYMMETRIC_ALGS.join(', ')}`);
        }
        if (key === 'access_token_alg' && value !== undefined && !signingAlgs.has(value)) {
          throw new errors.InvalidClientMetadata(`access_token_alg ${value}: the key file has no key for it`);
        }
        if (key === 'token_claims' && value !== undefined && (typeof value !== 'object' || Array.isArray(value))) {
          throw new errors.InvalidClientMetadata('token_claims must be an object');
        }
      },
    },
    async findAccount(ctx, sub) {
      const user = userBySub.get(sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        async claims() {
          return compact({
            sub: user.sub,
            email: user.email,
            email_verified: user.email ? true : undefined,
            name: user.name,
            preferred_username: user.username,
            groups: user.groups || [],
          });
        },
      };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    // What the api reads: on top of oidc-provider's jti, sub, iat, exp, scope, client_id,
    // iss, aud (and nbf, below).
    async extraTokenClaims(ctx, token) {
      if (token.accountId) {
        const user = userBySub.get(token.accountId);
        if (!user) return undefined;
        return compact({
          email: user.email,
          name: user.name,
          groups: user.groups || [],
          ...Object.fromEntries(STOREOPS_CLAIMS.map((c) => [c, user[c]])),
          ...(user.claims || {}),
        });
      }
      const client = token.client || ctx?.oidc?.client;
      return client?.token_claims ? { ...client.token_claims } : undefined;
    },
    formats: {
      customizers: {
        // nbf as some providers (Entra ID) send it, so the api's nbf check has one to check.
        async jwt(ctx, token, jwt) {
          if (cfg.nbf) jwt.payload.nbf = jwt.payload.iat;
        },
      },
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource(ctx, client, oneOf) {
          return oneOf ? oneOf[0] : resourceFor(cfg.audiences[0]);
        },
        useGrantedResource() {
          return true;
        },
        getResourceServerInfo(ctx, resource, client) {
          const audience = audienceFor(resource);
          if (!audienceSet.has(audience)) {
            throw new errors.InvalidTarget(`unknown audience ${audience}; this provider serves ${cfg.audiences.join(', ')}`);
          }
          return {
            scope: cfg.scope,
            audience,
            accessTokenTTL: cfg.ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: client.access_token_alg || defaultAlg } },
          };
        },
      },
    },
    // The code flow only: no implicit or hybrid response types.
    responseTypes: ['code'],
    pkce: { methods: ['S256'], required: () => true },
    ttl: {
      AccessToken: cfg.ttl,
      ClientCredentials: cfg.ttl,
      IdToken: cfg.ttl,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    interactions: {
      url(ctx, interaction) {
        return `/interaction/${interaction.uid}`;
      },
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', `<pre>${escapeHtml(JSON.stringify(out, null, 2))}</pre>`);
    },
  });

  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`${PROG}: server_error on ${ctx.method} ${ctx.path}: ${err.stack || err}\n`);
  });
  return provider;
}

async function main() {
  const cfg = parseConfig(process.argv.slice(2));
  const keys = loadKeys(cfg.keysPath);
  const users = loadUsers(cfg.usersPath);
  const clients = loadClients(cfg.clientsPath);

  // Imported after the flags are read, so --help and usage errors stay quick.
  const { default: Provider, errors } = await import('oidc-provider');

  let handler = (req, res) => {
    res.writeHead(503, { 'content-type': 'text/plain' });
    res.end('starting\n');
  };
  const server = http.createServer((req, res) => handler(req, res));
  server.keepAliveTimeout = 5000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.host, resolve);
  });
  const { port } = server.address();
  const hostInUrl = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host;
  const issuer = cfg.issuer || `http://${hostInUrl}:${port}`;

  const provider = await buildProvider(Provider, errors, cfg, issuer, keys, users, clients);
  const callback = provider.callback();
  const interaction = interactionHandler(provider, users);
  const interactionPath = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/;

  handler = async (req, res) => {
    const started = process.hrtime.bigint();
    if (cfg.verbose) {
      res.on('finish', () => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        process.stderr.write(`${PROG}: ${req.method} ${req.url.split('?')[0]} ${res.statusCode} ${ms.toFixed(1)}ms\n`);
      });
    }
    const path = req.url.split('?')[0];
    const m = interactionPath.exec(path);
    if (!m) return callback(req, res);
    try {
      return await interaction(req, res, m[1], m[2] || '');
    } catch (err) {
      if (res.headersSent) return res.destroy();
      const status = err.status || err.statusCode || 500;
      if (status >= 500) process.stderr.write(`${PROG}: interaction error: ${err.stack || err}\n`);
      return sendHtml(res, status, page('Error', `<p>${escapeHtml(err.error_description || err.message)}</p>`));
    }
  };

  const kids = keys.map((k) => `${k.kid}(${keyAlg(k)})`).join(', ');
  process.stderr.write(`${PROG}: ${issuer} ready (pid ${process.pid}); keys: ${kids}; audiences: ${cfg.audiences.join(', ')}; `
    + `${users.length} users, ${clients.length} clients; token ttl ${cfg.ttl}s\n`);
  if (cfg.readyFile) {
    const tmp = `${cfg.readyFile}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ issuer, port, pid: process.pid })}\n`);
    renameSync(tmp, cfg.readyFile);
  }

  const stop = (signal) => {
    process.stderr.write(`${PROG}: ${signal}, stopping\n`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => fail(PROG, err));
