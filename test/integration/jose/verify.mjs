// Verifies a simprov device token with the npm package `jose` (an
// independent JOSE implementation), against the broker's JWKS.
// Usage: node verify.mjs JWKS_URL_OR_FILE ISSUER AUDIENCE TOKEN
// Prints the protected header and claims as JSON; exit 0 valid, 1 invalid.
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify } from 'jose';

const [jwks, issuer, audience, token] = process.argv.slice(2);
if (!token) {
  console.error('usage: node verify.mjs JWKS ISSUER AUDIENCE TOKEN');
  process.exit(2);
}
const keys = /^https?:\/\//.test(jwks)
  ? createRemoteJWKSet(new URL(jwks))
  : createLocalJWKSet(JSON.parse(readFileSync(jwks, 'utf8')));
try {
  const { payload, protectedHeader } = await jwtVerify(token, keys, {
    issuer,
    audience,
    typ: 'at+jwt',
    algorithms: ['ES256', 'EdDSA'],
    requiredClaims: ['exp', 'iat', 'sub', 'jti'],
  });
  console.log(JSON.stringify({ header: protectedHeader, payload }));
} catch (e) {
  console.error(`jose: ${e.code || 'error'}: ${e.message}`);
  process.exit(1);
}
