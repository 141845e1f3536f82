#!/usr/bin/env node
// Gets a real access token from a running OpenID provider (server.mjs, or any OP with the
// same login form) and prints it, alone, on stdout; tests run it as a subprocess.
//
// A user's token: the authorization code flow with PKCE (S256) over HTTP, as a browser
// would go through it: authorization request, the sign-in page's form (login, password),
// the consent page's form, the redirect to the loopback redirect_uri carrying the code
// (nothing listens there: the redirect is read, not followed), then the code exchange.
// A machine's token: client_credentials (client_secret_basic).
//
//   token.mjs --user alice [--password pw] [--alg ES256] [--audience storeops-api] [--issuer URL]
//   token.mjs --client-credentials [--client storeops-integration --client-secret S] [--alg ES256]
//
// Flags (and the environment variables read when a flag is absent):
//   --issuer URL          STOREOPS_OIDC_ISSUER (required one way or the other)
//   --audience A          STOREOPS_OIDC_AUDIENCE, else storeops-api
//   --user U              username, email or sub of the account to sign in as
//   --password P          STOREOPS_OIDC_PASSWORD, else empty (accounts without a password take any)
//   --client ID           default storeops-dev (users) or storeops-integration (client credentials);
//                         with --alg ES256 (any alg but RS256) and no --client, the -es256 variant
//   --client-secret S     STOREOPS_OIDC_CLIENT_SECRET; for the default integration clients, their dev secret
//   --redirect-uri URI    default http://127.0.0.1/callback
//   --scope S             the resource's scope (default storeops); users also get openid email profile groups
//   --alg ALG             the alg the access token must be signed with (checked; also picks the client)
//   --print token|json|claims   the access token (default), the token response as JSON, or the
//                         token's decoded header and payload as JSON
//   --timeout MS          for each HTTP request (default 10000)
// Exit status: 0 and the output on stdout; 1 with a one-line reason on stderr; 2 for usage.
import { randomBytes, createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';

import {
  UsageError, fail, resourceFor, decodeJwt, parseFlags,
} from './lib/common.mjs';

const PROG = 'token.mjs';
const DEV_INTEGRATION_SECRET = 'storeops-integration-secret';
const MAX_HOPS = 12;

class CookieJar {
  constructor() {
    this.cookies = new Map(); // "name path" -> {name, value, path}
  }

  store(response) {
    for (const line of response.headers['set-cookie'] || []) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = '/';
      let expired = value === '';
      for (const attr of attrs) {
        const [k, v = ''] = attr.split('=');
        const key = k.trim().toLowerCase();
        if (key === 'path' && v.trim().startsWith('/')) path = v.trim();
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
      }
      const id = `${name} ${path}`;
      if (expired) this.cookies.delete(id);
      else this.cookies.set(id, { name, value, path });
    }
  }

  header(url) {
    const { pathname } = new URL(url);
    const matching = [...this.cookies.values()].filter((c) => pathname === c.path
      || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`));
    return matching.map((c) => `${c.name}=${c.value}`).join('; ');
  }
}

function options() {
  const { values } = parseFlags({
    args: process.argv.slice(2),
    options: {
      issuer: { type: 'string' },
      audience: { type: 'string' },
      user: { type: 'string' },
      password: { type: 'string' },
      client: { type: 'string' },
      'client-secret': { type: 'string' },
      'client-credentials': { type: 'boolean', default: false },
      'redirect-uri': { type: 'string', default: 'http://127.0.0.1/callback' },
      scope: { type: 'string', default: 'storeops' },
      alg: { type: 'string' },
      print: { type: 'string', default: 'token' },
      timeout: { type: 'string', default: '10000' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: token.mjs --user U [--password P] | --client-credentials; see the head of token.mjs\n');
    process.exit(0);
  }
  const env = (name) => process.env[name] || undefined;
  const issuer = (values.issuer || env('STOREOPS_OIDC_ISSUER') || '').replace(/\/+$/, '');
  if (!issuer) throw new UsageError('--issuer (or STOREOPS_OIDC_ISSUER) is required');
  const cc = values['client-credentials'];
  if (cc === Boolean(values.user)) throw new UsageError('give either --user U or --client-credentials');
  if (!['token', 'json', 'claims'].includes(values.print)) throw new UsageError('--print must be token, json or claims');
  const timeout = Number(values.timeout);
  if (!Number.isInteger(timeout) || timeout < 1) throw new UsageError('--timeout must be a positive integer (ms)');
  const alg = values.alg;
  let client = values.client;
  if (!client) {
    client = cc ? 'storeops-integration' : 'storeops-dev';
    if (alg && alg !== 'RS256') client += `-${alg.toLowerCase()}`;
  }
  let secret = values['client-secret'] || env('STOREOPS_OIDC_CLIENT_SECRET');
  if (!secret && /^storeops-integration(-[a-z0-9]+)?$/.test(client)) secret = DEV_INTEGRATION_SECRET;
  return {
    issuer,
    audience: values.audience || env('STOREOPS_OIDC_AUDIENCE') || 'storeops-api',
    user: values.user,
    password: values.password ?? env('STOREOPS_OIDC_PASSWORD') ?? '',
    client,
    secret,
    cc,
    redirectUri: values['redirect-uri'],
    scope: values.scope,
    alg,
    print: values.print,
    timeout,
  };
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

// node:http, not fetch: loading fetch's implementation costs a Node.js process about
// 0.2 s, as much as the whole flow. One keep-alive connection serves every request.
const agents = { 'http:': new http.Agent({ keepAlive: true, maxSockets: 1 }), 'https:': new https.Agent({ keepAlive: true, maxSockets: 1 }) };

function request(opts, url, init = {}) {
  const target = new URL(url);
  const method = init.method || 'GET';
  const lib = target.protocol === 'https:' ? https : http;
  if (!agents[target.protocol]) return Promise.reject(new Error(`${url}: only http and https URLs`));
  const body = init.body === undefined ? undefined : Buffer.from(String(init.body));
  const headers = { ...(init.headers || {}), ...(body ? { 'content-length': body.length } : {}) };
  return new Promise((resolve, reject) => {
    const req = lib.request(target, { method, headers, agent: agents[target.protocol] }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('timed out'), { code: `no answer within ${opts.timeout} ms` })), opts.timeout);
    req.on('close', () => clearTimeout(timer));
    req.on('error', (err) => reject(new Error(`${method} ${url}: ${err.code || err.message} (is the provider running at ${opts.issuer}?)`)));
    req.end(body);
  });
}

const unescapeHtml = (s) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<')
  .replace(/&gt;/g, '>').replace(/&amp;/g, '&');

// The error of an OAuth JSON answer, or of server.mjs's error page (its JSON in a <pre>), or
// the sign-in page's alert, or the page's text.
function errorText(text) {
  const pre = /<pre>([\s\S]*?)<\/pre>/.exec(text);
  for (const candidate of [text, pre && unescapeHtml(pre[1])]) {
    try {
      const json = JSON.parse(candidate);
      if (json.error) return `${json.error}${json.error_description ? `: ${json.error_description}` : ''}`;
    } catch { /* not JSON */ }
  }
  const alert = /<p role="alert"[^>]*>([^<]*)</.exec(text);
  const snippet = alert ? unescapeHtml(alert[1]) : unescapeHtml(text.replace(/<[^>]+>/g, ' '));
  return snippet.replace(/\s+/g, ' ').trim().slice(0, 300);
}

function parseJson(response, what) {
  try {
    return JSON.parse(response.body);
  } catch {
    throw new Error(`${what} is not JSON`);
  }
}

function clientAuth(opts, body) {
  if (opts.secret) {
    const enc = (s) => encodeURIComponent(s);
    return { authorization: `Basic ${Buffer.from(`${enc(opts.client)}:${enc(opts.secret)}`).toString('base64')}` };
  }
  body.set('client_id', opts.client);
  return {};
}

async function tokenRequest(opts, endpoint, body) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded', ...clientAuth(opts, body) };
  const response = await request(opts, endpoint, { method: 'POST', headers, body });
  if (response.status !== 200) {
    throw new Error(`token endpoint answered ${response.status}: ${errorText(response.body)}`);
  }
  return parseJson(response, 'the token response');
}

// The first <form> of a page: its action and its inputs' names and values.
function parseForm(html, pageUrl) {
  const form = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return undefined;
  const action = /\baction="([^"]*)"/i.exec(form[1]);
  const fields = new Map();
  for (const input of form[2].matchAll(/<input\b([^>]*)>/gi)) {
    const name = /\bname="([^"]*)"/i.exec(input[1]);
    const value = /\bvalue="([^"]*)"/i.exec(input[1]);
    if (name) fields.set(name[1], value ? value[1].replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&') : '');
  }
  return { action: new URL(action ? action[1].replace(/&amp;/g, '&') : '', pageUrl).href, fields };
}

async function userToken(opts, meta) {
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  const state = b64url(randomBytes(16));
  const resource = resourceFor(opts.audience);
  const auth = new URL(meta.authorization_endpoint);
  auth.search = new URLSearchParams({
    client_id: opts.client,
    response_type: 'code',
    redirect_uri: opts.redirectUri,
    scope: `openid email profile groups ${opts.scope}`.trim(),
    resource,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    nonce: b64url(randomBytes(16)),
  }).toString();

  const jar = new CookieJar();
  let url = auth.href;
  let init = {};
  let signedIn = false;
  let code;
  for (let hop = 0; hop < MAX_HOPS && !code; hop += 1) {
    const cookie = jar.header(url);
    const response = await request(opts, url, { ...init, headers: { ...(init.headers || {}), ...(cookie ? { cookie } : {}) } });
    jar.store(response);
    init = {};
    if ([301, 302, 303, 307, 308].includes(response.status)) {
      if (!response.headers.location) throw new Error(`${url} answered ${response.status} without a location`);
      const next = new URL(response.headers.location, url);
      if (next.href.startsWith(opts.redirectUri)) {
        const q = next.searchParams;
        if (q.get('error')) throw new Error(`authorization refused: ${q.get('error')}${q.get('error_description') ? `: ${q.get('error_description')}` : ''}`);
        if (q.get('state') !== state) throw new Error('the redirect carried another state');
        if (q.get('iss') && q.get('iss') !== meta.issuer) throw new Error(`the redirect's iss ${q.get('iss')} is not ${meta.issuer}`);
        code = q.get('code');
        if (!code) throw new Error('the redirect to the client carried no code');
        break;
      }
      url = next.href;
      continue;
    }
    const { body } = response;
    if (response.status === 401 && /name="password"/.test(body)) {
      throw new Error(`sign-in refused for ${opts.user}: ${errorText(body)}`);
    }
    if (response.status !== 200) {
      const { origin, pathname } = new URL(url);
      throw new Error(`${origin}${pathname} answered ${response.status}: ${errorText(body)}`);
    }
    const form = parseForm(body, url);
    if (!form) throw new Error(`${url}: a page without a form where sign-in or consent was expected`);
    const fields = new URLSearchParams(form.fields);
    if (form.fields.has('password')) {
      if (signedIn) throw new Error(`sign-in as ${opts.user} did not take (the sign-in page came back)`);
      fields.set('login', opts.user);
      fields.set('password', opts.password);
      signedIn = true;
    }
    url = form.action;
    init = { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: fields.toString() };
  }
  if (!code) throw new Error(`no authorization code after ${MAX_HOPS} steps`);

  return tokenRequest(opts, meta.token_endpoint, new URLSearchParams({
    grant_type: 'authorization_code',
    code,
    redirect_uri: opts.redirectUri,
    code_verifier: verifier,
    resource,
  }));
}

async function machineToken(opts, meta) {
  return tokenRequest(opts, meta.token_endpoint, new URLSearchParams({
    grant_type: 'client_credentials',
    scope: opts.scope,
    resource: resourceFor(opts.audience),
  }));
}

async function main() {
  const opts = options();
  const discovery = `${opts.issuer}/.well-known/openid-configuration`;
  const response = await request(opts, discovery);
  if (response.status !== 200) throw new Error(`${discovery} answered ${response.status}`);
  const meta = parseJson(response, discovery);
  if (meta.issuer !== opts.issuer) throw new Error(`discovery names issuer ${meta.issuer}, not ${opts.issuer}`);

  const tokens = opts.cc ? await machineToken(opts, meta) : await userToken(opts, meta);
  if (typeof tokens.access_token !== 'string') throw new Error('the token response has no access_token');
  const decoded = decodeJwt(tokens.access_token);
  if (opts.alg && decoded.header.alg !== opts.alg) {
    throw new Error(`the access token is signed with ${decoded.header.alg}, not ${opts.alg} (client ${opts.client})`);
  }

  let out;
  if (opts.print === 'json') out = JSON.stringify(tokens);
  else if (opts.print === 'claims') out = JSON.stringify(decoded);
  else out = tokens.access_token;
  process.stdout.write(`${out}\n`);
}

main()
  .catch((err) => fail(PROG, err))
  .finally(() => Object.values(agents).forEach((a) => a.destroy()));
