#!/usr/bin/env node
// Private JWKS files for server.mjs --keys: make, combine and trim them, so a test can run
// its provider with keys [A], restart it with [B, A] (B, the new kid, signs; A is still
// published) and then with [B] (A removed).
//
//   keys.mjs generate [--alg RS256]... [--kid K]... [--bits 2048]   a JWKS of new keys (one per --alg)
//   keys.mjs add FILE [--alg ES256] [--kid K] [--last]              FILE's keys plus a new one, first unless --last
//   keys.mjs merge FILE...                                           all keys of the files, in order
//   keys.mjs remove FILE --kid K...                                  FILE without those kids
//   keys.mjs public FILE                                             the public JWKS (what jwks_uri serves)
//   keys.mjs list FILE                                               "kid alg kty" lines
// The JWKS goes to stdout, or with --out F to F (written whole, mode 600; F may be the input).
// Generated keys carry kid, alg and use=sig; the default kid is the key's RFC 7638 thumbprint.
import { writeFileSync, renameSync } from 'node:fs';

import { generateKeyPair, exportJWK, calculateJwkThumbprint } from 'jose';

import { UsageError, fail, readJson, ASYMMETRIC_ALGS, parseFlags } from './lib/common.mjs';

const PROG = 'keys.mjs';
const PUBLIC_MEMBERS = {
  RSA: ['kty', 'n', 'e'],
  EC: ['kty', 'crv', 'x', 'y'],
  OKP: ['kty', 'crv', 'x'],
};

async function newKey(alg, kid, bits) {
  if (!ASYMMETRIC_ALGS.includes(alg)) {
    throw new UsageError(`--alg must be one of ${ASYMMETRIC_ALGS.join(', ')}, not ${alg}`);
  }
  const options = { extractable: true };
  if (alg.startsWith('RS') || alg.startsWith('PS')) options.modulusLength = bits;
  if (alg === 'EdDSA') options.crv = 'Ed25519';
  const { privateKey } = await generateKeyPair(alg, options);
  const jwk = await exportJWK(privateKey);
  return { kid: kid || await calculateJwkThumbprint(jwk), alg, use: 'sig', ...jwk };
}

function readKeys(path) {
  const jwks = readJson(path, 'key file');
  if (!jwks || !Array.isArray(jwks.keys)) throw new UsageError(`${path} is not a JWKS ({"keys": [...]})`);
  return jwks.keys;
}

function checkUnique(keys) {
  const seen = new Set();
  for (const k of keys) {
    if (seen.has(k.kid)) throw new UsageError(`kid ${k.kid} would appear twice`);
    seen.add(k.kid);
  }
  return keys;
}

function publicJwk(k) {
  const members = PUBLIC_MEMBERS[k.kty];
  if (!members) throw new UsageError(`key ${k.kid}: unknown kty ${k.kty}`);
  const out = { kid: k.kid, alg: k.alg, use: k.use };
  for (const m of members) out[m] = k[m];
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
}

function output(jwks, out) {
  const text = `${JSON.stringify(jwks, null, 2)}\n`;
  if (!out) {
    process.stdout.write(text);
    return;
  }
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, out);
}

async function main() {
  const [command, ...rest] = process.argv.slice(2);
  const { values, positionals } = parseFlags({
    args: rest,
    allowPositionals: true,
    options: {
      alg: { type: 'string', multiple: true },
      kid: { type: 'string', multiple: true },
      bits: { type: 'string', default: '2048' },
      last: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
  });
  const bits = Number(values.bits);
  if (![2048, 3072, 4096].includes(bits)) throw new UsageError('--bits must be 2048, 3072 or 4096');
  const files = (n) => {
    if (n !== undefined && positionals.length !== n) {
      throw new UsageError(`${command} takes ${n} file${n === 1 ? '' : 's'}`);
    }
    if (n !== 0 && !positionals.length) throw new UsageError(`${command} needs a key file`);
    return positionals;
  };

  switch (command) {
    case 'generate': {
      files(0);
      const algs = values.alg || ['RS256'];
      const kids = values.kid || [];
      if (kids.length > algs.length) throw new UsageError('more --kid than --alg');
      const keys = [];
      for (const [i, alg] of algs.entries()) keys.push(await newKey(alg, kids[i], bits));
      return output({ keys: checkUnique(keys) }, values.out);
    }
    case 'add': {
      const [file] = files(1);
      const keys = readKeys(file);
      if ((values.alg || []).length > 1 || (values.kid || []).length > 1) throw new UsageError('add takes one --alg and one --kid');
      const key = await newKey((values.alg || ['RS256'])[0], (values.kid || [])[0], bits);
      return output({ keys: checkUnique(values.last ? [...keys, key] : [key, ...keys]) }, values.out);
    }
    case 'merge':
      return output({ keys: checkUnique(files().flatMap(readKeys)) }, values.out);
    case 'remove': {
      const [file] = files(1);
      const drop = new Set(values.kid || []);
      if (!drop.size) throw new UsageError('remove needs --kid');
      const keys = readKeys(file);
      for (const kid of drop) {
        if (!keys.some((k) => k.kid === kid)) throw new UsageError(`no key ${kid} in ${file}`);
      }
      return output({ keys: keys.filter((k) => !drop.has(k.kid)) }, values.out);
    }
    case 'public': {
      const [file] = files(1);
      return output({ keys: readKeys(file).map(publicJwk) }, values.out);
    }
    case 'list': {
      const [file] = files(1);
      for (const k of readKeys(file)) process.stdout.write(`${k.kid} ${k.alg || '-'} ${k.kty}\n`);
      return undefined;
    }
    default:
      throw new UsageError('usage: keys.mjs generate|add|merge|remove|public|list ... (see the head of keys.mjs)');
  }
}

main().catch((err) => fail(PROG, err));
