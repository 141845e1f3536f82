// Helpers shared by server.mjs, token.mjs, keys.mjs and forge.mjs.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export class UsageError extends Error {}

// Exit with a one-line message on stderr (status 2 for usage errors, 1 otherwise).
export function fail(prog, err) {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`${prog}: ${msg}\n`);
  process.exit(err instanceof UsageError ? 2 : 1);
}

// node:util's parseArgs, its errors (unknown flag, missing value) as usage errors.
export function parseFlags(config) {
  try {
    return parseArgs(config);
  } catch (err) {
    throw new UsageError(err.message);
  }
}

export function readJson(path, what) {
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${err.code || err.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${what} ${path} is not JSON: ${err.message}`);
  }
}

// oidc-provider takes only absolute URIs as resource indicators (RFC 8707 §2), while
// audiences such as Keycloak's client ids ("storeops-api") are not URIs. An audience that
// is an absolute URI is its own resource indicator; any other is asked for as
// urn:storeops:audience:<audience>. token.mjs and server.mjs both use this mapping.
const AUDIENCE_URN = 'urn:storeops:audience:';

function isAbsoluteUri(value) {
  return /^[A-Za-z][A-Za-z0-9+.-]*:/.test(value) && URL.canParse(value);
}

export function resourceFor(audience) {
  return isAbsoluteUri(audience) ? audience : AUDIENCE_URN + audience;
}

export function audienceFor(resource) {
  return resource.startsWith(AUDIENCE_URN) ? resource.slice(AUDIENCE_URN.length) : resource;
}

// Base64url-decoded JSON of a compact JWS part.
export function decodePart(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

export function decodeJwt(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS (three dot-separated parts)');
  return { header: decodePart(parts[0]), payload: decodePart(parts[1]) };
}

export const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
