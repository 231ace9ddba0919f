// RFC 8414 discovery and RFC 7662 introspection against a simprov broker
// with the npm package `oauth4webapi` (an independent OAuth 2.0 client).
// Usage: node oauth.mjs ISSUER APP KEY TOKEN
// Prints {"metadata": ..., "introspection": ...} as JSON; exit 0 when both
// calls pass the library's checks, 1 otherwise (the error on stderr).
import * as oauth from 'oauth4webapi';

const [issuer, app, key, token] = process.argv.slice(2);
if (token === undefined) {
  console.error('usage: node oauth.mjs ISSUER APP KEY TOKEN');
  process.exit(2);
}
// The test broker serves plain HTTP on loopback.
const insecure = { [oauth.allowInsecureRequests]: true };
try {
  const issuerUrl = new URL(issuer);
  const discovered = await oauth.discoveryRequest(issuerUrl, {
    algorithm: 'oauth2',
    ...insecure,
  });
  const as = await oauth.processDiscoveryResponse(issuerUrl, discovered);
  const client = { client_id: app };
  const answer = await oauth.introspectionRequest(
    as, client, oauth.ClientSecretBasic(key), token, insecure);
  const introspection =
    await oauth.processIntrospectionResponse(as, client, answer);
  console.log(JSON.stringify({ metadata: as, introspection }));
} catch (e) {
  console.error(`oauth4webapi: ${e.code || e.name}: ${e.message}`);
  process.exit(1);
}
