// Drives localcloud with Alibaba's own Node.js SDKs (ali-oss for OSS, @alicloud/pop-core for
// STS), as a second client independent of the Go SDKs. Run by TestNodeClient
// (internal/localcloud/node_test.go), which starts localcloud and passes, in the environment:
//   LC_OSS_ENDPOINT  http://127.0.0.1:PORT      LC_STS_ENDPOINT  http://127.0.0.1:PORT
//   LC_AK, LC_SK     an unrestricted long-term key
//   LC_ROLE_ARN      a role allowing oss:* on LC_BUCKET
//   LC_BUCKET, LC_OTHER_BUCKET, LC_REGION, LC_DOMAIN (the endpoint domain for virtual hosts)
// Prints "ok NAME" per check and "PASS N" at the end; exits 1 at the first failure.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const OSS = require('ali-oss');
const RPCClient = require('@alicloud/pop-core').RPCClient;

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const ossEndpoint = env('LC_OSS_ENDPOINT');
const stsEndpoint = env('LC_STS_ENDPOINT');
const bucket = env('LC_BUCKET');
const otherBucket = env('LC_OTHER_BUCKET');
const region = env('LC_REGION');
const domain = env('LC_DOMAIN');

let passed = 0;
async function check(name, fn) {
  try {
    await fn();
  } catch (err) {
    console.error(`FAIL ${name}: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  }
  passed++;
  console.log(`ok ${name}`);
}

// rejects asserts that p fails with an OSS or STS error of the given status, code and EC.
async function rejects(p, status, code, ec) {
  let err;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `want ${status} ${code}, got success`);
  assert.equal(err.code, code, `code: ${err}`);
  if (status) assert.equal(err.status, status, `status: ${err}`);
  if (ec !== undefined) assert.equal(err.ecCode, ec, `EC: ${err}`);
  return err;
}

const md5hex = (b) => crypto.createHash('md5').update(b).digest('hex').toUpperCase();
const md5b64 = (b) => crypto.createHash('md5').update(b).digest('base64');

function ossClient(opts) {
  // sldEnable: path style (/bucket/key), which an IP endpoint needs.
  return new OSS({ endpoint: ossEndpoint, sldEnable: true, bucket, region: `oss-${region}`, timeout: 30000, ...opts });
}

function fetchURL(url, agent) {
  return new Promise((resolve, reject) => {
    http.get(url, { agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

async function assumeRole(policy, session) {
  const sts = new RPCClient({ accessKeyId: env('LC_AK'), accessKeySecret: env('LC_SK'), endpoint: stsEndpoint, apiVersion: '2015-04-01' });
  const params = { RoleArn: env('LC_ROLE_ARN'), RoleSessionName: session, DurationSeconds: 3600 };
  if (policy) params.Policy = policy;
  const res = await sts.request('AssumeRole', params, { method: 'POST' });
  return res.Credentials;
}

async function exerciseObjects(label, client) {
  const dir = `node/${label}/`;
  const data = crypto.randomBytes(1000);

  await check(`${label}: put, get, head`, async () => {
    const r = await client.put(`${dir}clip ü+&.mp4`, data, { mime: 'video/mp4', headers: { 'x-oss-forbid-overwrite': 'true' } });
    assert.equal(r.res.status, 200);
    assert.equal(r.res.headers.etag, `"${md5hex(data)}"`);
    const g = await client.get(`${dir}clip ü+&.mp4`);
    assert.deepEqual(g.content, data);
    const h = await client.head(`${dir}clip ü+&.mp4`);
    assert.equal(h.res.headers['content-type'], 'video/mp4');
    assert.equal(h.res.headers['x-oss-object-type'], 'Normal');
  });

  await check(`${label}: forbid-overwrite`, async () => {
    await rejects(client.put(`${dir}clip ü+&.mp4`, Buffer.from('again'), { headers: { 'x-oss-forbid-overwrite': 'true' } }),
      409, 'FileAlreadyExists', '0026-00000002');
    await rejects(client.put(`${dir}clip ü+&.mp4`, Buffer.from('again'), { headers: { 'x-oss-forbid-overwrite': 'maybe' } }),
      400, 'InvalidArgument', '0017-00000279');
    const g = await client.get(`${dir}clip ü+&.mp4`);
    assert.deepEqual(g.content, data);
  });

  await check(`${label}: ranges`, async () => {
    let g = await client.get(`${dir}clip ü+&.mp4`, { headers: { Range: 'bytes=10-19' } });
    assert.equal(g.res.status, 206);
    assert.deepEqual(g.content, data.subarray(10, 20));
    g = await client.get(`${dir}clip ü+&.mp4`, { headers: { Range: 'bytes=500-5000' } });
    assert.equal(g.res.status, 200, 'a range past the end is ignored without x-oss-range-behavior');
    assert.deepEqual(g.content, data);
    g = await client.get(`${dir}clip ü+&.mp4`, { headers: { Range: 'bytes=500-5000', 'x-oss-range-behavior': 'standard' } });
    assert.equal(g.res.status, 206);
    assert.deepEqual(g.content, data.subarray(500));
    await rejects(client.get(`${dir}clip ü+&.mp4`, { headers: { Range: 'bytes=1000-', 'x-oss-range-behavior': 'standard' } }),
      416, 'InvalidRange', '0000-00000000');
  });

  await check(`${label}: Content-MD5 mismatch`, async () => {
    await rejects(client.put(`${dir}bad-md5`, data, { headers: { 'Content-MD5': md5b64(Buffer.from('other')) } }),
      400, 'InvalidDigest');
    await rejects(client.head(`${dir}bad-md5`), 404, 'NoSuchKey');
  });

  await check(`${label}: append`, async () => {
    let r = await client.append(`${dir}log`, Buffer.from('first'));
    assert.equal(r.nextAppendPosition, '5');
    r = await client.append(`${dir}log`, Buffer.from(' second'), { position: r.nextAppendPosition });
    assert.equal(r.nextAppendPosition, '12');
    const h = await client.head(`${dir}log`);
    assert.equal(h.res.headers['x-oss-object-type'], 'Appendable');
    assert.notEqual(h.res.headers.etag, `"${md5hex(Buffer.from('first second'))}"`, 'an appendable ETag is not the MD5');
    await rejects(client.append(`${dir}log`, Buffer.from('x'), { position: 3 }), 409, 'PositionNotEqualToLength', '0026-00000016');
  });

  await check(`${label}: multipart and ListMultipartUploads`, async () => {
    const big = crypto.randomBytes(250 * 1024);
    const init = await client.initMultipartUpload(`${dir}pending.mp4`);
    const listed = await client.listUploads({ prefix: dir });
    assert.ok(listed.uploads.some((u) => u.name === `${dir}pending.mp4` && u.uploadId === init.uploadId), JSON.stringify(listed.uploads));
    await client.abortMultipartUpload(`${dir}pending.mp4`, init.uploadId);
    const after = await client.listUploads({ prefix: dir });
    assert.ok(!after.uploads.some((u) => u.uploadId === init.uploadId));
    const r = await client.multipartUpload(`${dir}big.mp4`, big, { partSize: 100 * 1024, parallel: 2 });
    assert.equal(r.res.status, 200);
    const g = await client.get(`${dir}big.mp4`);
    assert.deepEqual(g.content, big);
    assert.match((await client.head(`${dir}big.mp4`)).res.headers.etag, /-3"$/);
  });

  await check(`${label}: copy and DeleteMultipleObjects`, async () => {
    const c = await client.copy(`${dir}copy.mp4`, `${dir}clip ü+&.mp4`);
    assert.equal(c.res.status, 200);
    assert.deepEqual((await client.get(`${dir}copy.mp4`)).content, data);
    await rejects(client.copy(`${dir}copy.mp4`, `${dir}clip ü+&.mp4`, { headers: { 'x-oss-forbid-overwrite': 'true' } }),
      409, 'FileAlreadyExists', '0026-00000002');
    const d = await client.deleteMulti([`${dir}copy.mp4`, `${dir}big.mp4`, `${dir}absent`]);
    assert.deepEqual(d.deleted.map((x) => x.Key).sort(), [`${dir}absent`, `${dir}big.mp4`, `${dir}copy.mp4`]);
    await rejects(client.head(`${dir}copy.mp4`), 404, 'NoSuchKey');
    const q = await client.deleteMulti([`${dir}log`], { quiet: true });
    assert.equal(q.res.status, 200);
    await rejects(client.head(`${dir}log`), 404, 'NoSuchKey');
  });

  await check(`${label}: listV2`, async () => {
    const l = await client.listV2({ prefix: dir, 'max-keys': 10 });
    assert.deepEqual(l.objects.map((o) => o.name), [`${dir}clip ü+&.mp4`]);
  });

  await check(`${label}: absent key and bucket`, async () => {
    await rejects(client.get(`${dir}absent`), 404, 'NoSuchKey', '0026-00000001');
    client.useBucket('no-such-bucket');
    try {
      await rejects(client.get(`${dir}absent`), 404, 'NoSuchBucket', '0015-00000101');
    } finally {
      client.useBucket(bucket);
    }
  });
}

async function main() {
  const admin = { accessKeyId: env('LC_AK'), accessKeySecret: env('LC_SK') };

  let creds;
  await check('sts: AssumeRole with pop-core', async () => {
    creds = await assumeRole(JSON.stringify({ Version: '1', Statement: [{ Effect: 'Allow', Action: ['oss:*'], Resource: [`acs:oss:*:*:${bucket}/node/*`, `acs:oss:*:*:${bucket}`] }] }), 'node-1');
    assert.match(creds.AccessKeyId, /^STS\./);
    assert.ok(creds.SecurityToken && creds.AccessKeySecret && creds.Expiration);
  });
  await check('sts: PolicySize', async () => {
    const long = JSON.stringify({ Version: '1', Statement: [{ Effect: 'Allow', Action: 'oss:GetObject', Resource: `acs:oss:*:*:${bucket}/${'a'.repeat(2000)}` }] });
    // pop-core reports no HTTP status; the code and the message are checked.
    const err = await rejects(assumeRole(long, 'node-2'), 0, 'InvalidParameter.PolicySize');
    assert.ok(err.data && err.data.RequestId, 'STS error body without RequestId');
    assert.match(err.message, /at most 2048 characters/);
  });

  await exerciseObjects('v1-admin', ossClient(admin));
  await exerciseObjects('v4-admin', ossClient({ ...admin, authorizationV4: true }));
  const sts = { accessKeyId: creds.AccessKeyId, accessKeySecret: creds.AccessKeySecret, stsToken: creds.SecurityToken };
  await exerciseObjects('v1-sts', ossClient(sts));
  await exerciseObjects('v4-sts', ossClient({ ...sts, authorizationV4: true }));

  await check('sts: session policy and mismatched token', async () => {
    const c = ossClient(sts);
    await rejects(c.put('outside/x', Buffer.from('x')), 403, 'AccessDenied', '0003-00000001');
    const other = await assumeRole('', 'node-3');
    const mixed = ossClient({ accessKeyId: creds.AccessKeyId, accessKeySecret: creds.AccessKeySecret, stsToken: other.SecurityToken });
    await rejects(mixed.put('node/x', Buffer.from('x')), 403, 'AccessKeyIdAndSecurityTokenNotMatch', '0002-00000004');
  });

  await check('cross-bucket copy', async () => {
    const c = ossClient(admin);
    await c.put('node/src', Buffer.from('across'));
    const o = ossClient({ ...admin, bucket: otherBucket });
    await o.copy('node/dst', 'node/src', bucket);
    assert.equal((await o.get('node/dst')).content.toString(), 'across');
  });

  // Virtual-hosted style, as a client set up for Alibaba addresses OSS: the bucket in the
  // Host header (bucket.DOMAIN:PORT); the agent sends every such name to the server's
  // loopback address. Signed URLs need a host name, so they are checked here.
  const port = new URL(ossEndpoint).port;
  const agent = new http.Agent({ keepAlive: true, lookup: (host, opts, cb) => (opts && opts.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)) });
  for (const [label, keys] of [['admin', admin], ['sts', sts]]) {
    await check(`virtual-hosted style, ${label}: V1 and V4, signed URLs`, async () => {
      for (const v4 of [false, true]) {
        const vh = new OSS({ ...keys, endpoint: `http://${domain}:${port}`, bucket, region: `oss-${region}`, agent, authorizationV4: v4 });
        const name = `node/vh ${label} ${v4}.txt`;
        const r = await vh.put(name, Buffer.from('virtual'));
        assert.ok(r.url.startsWith(`http://${bucket}.${domain}:${port}/`), r.url);
        assert.equal((await vh.get(name)).content.toString(), 'virtual');
        const url = v4 ? await vh.signatureUrlV4('GET', 60, undefined, name) : vh.signatureUrl(name, { expires: 60 });
        assert.ok(url.startsWith(`http://${bucket}.${domain}:${port}/`), url);
        const f = await fetchURL(url, agent);
        assert.equal(f.status, 200, `signed URL ${url}: ${f.body}`);
        assert.equal(f.body.toString(), 'virtual');
        const tampered = await fetchURL(url.replace('vh%20', 'vh%20x'), agent);
        assert.equal(tampered.status, 403);
      }
    });
  }
  agent.destroy();

  console.log(`PASS ${passed}`);
}

main().catch((err) => {
  console.error(`FAIL: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
