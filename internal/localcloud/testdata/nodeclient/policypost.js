// Drives localcloud's bucket policies, lifecycle rules, PostObject (V1 and V4 policy
// signatures as ali-oss computes them), GetCallerIdentity and AssumeRole with STS
// credentials through Alibaba's Node.js SDKs (ali-oss, @alicloud/pop-core). Run by
// TestNodeClientPolicyPost (internal/localcloud/node_policypost_test.go) with the
// environment of script.js plus LC_CHAIN_ROLE_ARN (a role whose policy allows
// sts:AssumeRole on LC_ROLE_ARN). Prints "ok NAME" per check and "PASS N" at the end; exits
// 1 at the first failure.
'use strict';

const assert = require('node:assert/strict');
const OSS = require('ali-oss');
const RPCClient = require('@alicloud/pop-core').RPCClient;
const { getCredential } = require('ali-oss/lib/common/signUtils');
const { policy2Str } = require('ali-oss/lib/common/utils/policy2Str');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const ossEndpoint = env('LC_OSS_ENDPOINT');
const stsEndpoint = env('LC_STS_ENDPOINT');
const bucket = env('LC_BUCKET');
const region = env('LC_REGION');

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

async function rejects(promise, status, code) {
  try {
    await promise;
  } catch (err) {
    assert.equal(err.status, status, `status of ${err.code}: ${err.message}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${status} ${code}, got success`);
}

function ossClient(opts) {
  return new OSS({ endpoint: ossEndpoint, sldEnable: true, bucket, region: `oss-${region}`, timeout: 30000, ...opts });
}

function sts(creds) {
  return new RPCClient({ endpoint: stsEndpoint, apiVersion: '2015-04-01', ...creds });
}

async function assumeRole(client, roleArn, session, policy) {
  const params = { RoleArn: roleArn, RoleSessionName: session, DurationSeconds: 3600 };
  if (policy) params.Policy = policy;
  return (await client.request('AssumeRole', params, { method: 'POST' })).Credentials;
}

// post sends a browser-style form (fields, then the file) to the bucket.
async function post(fields, content) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('file', new Blob([content]), 'clip.mp4');
  const res = await fetch(`${ossEndpoint}/${bucket}/`, { method: 'POST', body: form });
  return { status: res.status, body: await res.text() };
}

(async () => {
  const admin = ossClient({ accessKeyId: env('LC_AK'), accessKeySecret: env('LC_SK') });
  const adminSTS = sts({ accessKeyId: env('LC_AK'), accessKeySecret: env('LC_SK') });
  const devicePolicy = JSON.stringify({ Version: '1', Statement: [{ Effect: 'Allow', Action: ['oss:PutObject', 'oss:GetObject'], Resource: [`acs:oss:*:*:${bucket}/cams/node-1/*`] }] });
  const cam = await assumeRole(adminSTS, env('LC_ROLE_ARN'), 'node-1', devicePolicy);
  const camClient = ossClient({ accessKeyId: cam.AccessKeyId, accessKeySecret: cam.AccessKeySecret, stsToken: cam.SecurityToken });

  await check('bucket policy: put, get, Deny wins over the session policy, delete', async () => {
    await camClient.put('cams/node-1/before', Buffer.from('x'));
    const deny = { Version: '1', Statement: [{ Effect: 'Deny', Principal: ['*'], Action: ['oss:*'], Resource: [`acs:oss:*:*:${bucket}/cams/node-1/*`] }] };
    const r = await admin.putBucketPolicy(bucket, deny);
    assert.equal(r.status, 200);
    const g = await admin.getBucketPolicy(bucket);
    assert.deepEqual(g.policy, deny);
    const err = await rejects(camClient.put('cams/node-1/after', Buffer.from('x')), 403, 'AccessDenied');
    assert.equal(err.ecCode, '0003-00000101');
    const d = await admin.deleteBucketPolicy(bucket);
    assert.equal(d.status, 204);
    // ali-oss answers a 404 here with policy null rather than an error (its own test expects that).
    const none = await admin.getBucketPolicy(bucket);
    assert.equal(none.policy, null);
    assert.equal(none.status, 404);
    await camClient.put('cams/node-1/restored', Buffer.from('x'));
  });

  await check('lifecycle: put, get, delete', async () => {
    await admin.putBucketLifecycle(bucket, [
      { id: 'node-exp', prefix: 'node/tmp/', status: 'Enabled', expiration: { days: 3 } },
      { id: 'node-abort', prefix: 'node/mp/', status: 'Enabled', abortMultipartUpload: { days: 1 } },
    ]);
    const g = await admin.getBucketLifecycle(bucket);
    assert.equal(g.rules.length, 2);
    assert.equal(g.rules[0].id, 'node-exp');
    assert.equal(g.rules[0].prefix, 'node/tmp/');
    assert.equal(String(g.rules[0].expiration.days), '3');
    assert.equal(String(g.rules[1].abortMultipartUpload.days), '1');
    await rejects(admin.putBucketLifecycle(bucket, [
      { id: 'a', prefix: 'x/', status: 'Enabled', expiration: { days: 1 } },
      { id: 'b', prefix: 'x/y', status: 'Enabled', expiration: { days: 2 } },
    ]), 400, 'InvalidArgument');
    await admin.deleteBucketLifecycle(bucket);
    const none = await admin.getBucketLifecycle(bucket).catch((e) => e);
    assert.equal(none.code, 'NoSuchLifecycle');
  });

  const expiration = new Date(Date.now() + 10 * 60 * 1000).toISOString();
  await check('PostObject: V1 signature from calculatePostSignature', async () => {
    const policy = { expiration, conditions: [{ bucket }, ['starts-with', '$key', 'node/post/'], ['content-length-range', 1, 100]] };
    const sig = admin.calculatePostSignature(policy);
    const r = await post({ key: 'node/post/v1', success_action_status: '200', ...sig }, 'v1 body');
    assert.equal(r.status, 200, r.body);
    const g = await admin.get('node/post/v1');
    assert.equal(g.content.toString(), 'v1 body');
    const bad = await post({ key: 'node/elsewhere', ...sig }, 'v1 body');
    assert.equal(bad.status, 403, bad.body);
    assert.match(bad.body, /Policy Condition failed/);
  });

  await check('PostObject: V4 signature from signPostObjectPolicyV4, STS credentials', async () => {
    const date = new Date();
    const iso = date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    const credential = getCredential(iso.split('T')[0], region, cam.AccessKeyId);
    const policy = {
      expiration,
      conditions: [
        { bucket },
        { 'x-oss-credential': credential },
        { 'x-oss-date': iso },
        { 'x-oss-signature-version': 'OSS4-HMAC-SHA256' },
        { 'x-oss-security-token': cam.SecurityToken },
        ['content-length-range', 1, 100],
        ['eq', '$success_action_status', '201'],
        ['in', '$content-type', ['video/mp4']],
      ],
    };
    const signature = camClient.signPostObjectPolicyV4(policy, date);
    const fields = {
      key: 'cams/node-1/post-v4', 'Content-Type': 'video/mp4', success_action_status: '201',
      'x-oss-date': iso, 'x-oss-credential': credential, 'x-oss-signature-version': 'OSS4-HMAC-SHA256',
      'x-oss-security-token': cam.SecurityToken,
      policy: Buffer.from(policy2Str(policy), 'utf8').toString('base64'), 'x-oss-signature': signature,
    };
    const r = await post(fields, 'v4 body');
    assert.equal(r.status, 201, r.body);
    assert.match(r.body, /<Key>cams\/node-1\/post-v4<\/Key>/);
    const h = await admin.head('cams/node-1/post-v4');
    assert.equal(h.res.headers['content-type'], 'video/mp4');
    const outside = await post({ ...fields, key: 'cams/node-2/post-v4' }, 'v4 body'); // the session policy refuses it
    assert.equal(outside.status, 403, outside.body);
  });

  await check('GetCallerIdentity: RAM user and role session', async () => {
    const me = await adminSTS.request('GetCallerIdentity', {}, { method: 'POST' });
    assert.equal(me.IdentityType, 'RAMUser');
    assert.match(me.Arn, /^acs:ram::\d+:user\//);
    const session = sts({ accessKeyId: cam.AccessKeyId, accessKeySecret: cam.AccessKeySecret, securityToken: cam.SecurityToken });
    const who = await session.request('GetCallerIdentity', {}, { method: 'POST' });
    assert.equal(who.IdentityType, 'AssumedRoleUser');
    assert.match(who.Arn, /:assumed-role\/[^/]+\/node-1$/);
  });

  await check('AssumeRole with STS credentials: allowed by the caller\'s policy and the trust policy, else NoPermission', async () => {
    const chain = await assumeRole(adminSTS, env('LC_CHAIN_ROLE_ARN'), 'chain-1');
    const chainSTS = sts({ accessKeyId: chain.AccessKeyId, accessKeySecret: chain.AccessKeySecret, securityToken: chain.SecurityToken });
    const next = await assumeRole(chainSTS, env('LC_ROLE_ARN'), 'from-chain');
    assert.match(next.AccessKeyId, /^STS\./);
    const camSTS = sts({ accessKeyId: cam.AccessKeyId, accessKeySecret: cam.AccessKeySecret, securityToken: cam.SecurityToken });
    const err = await assumeRole(camSTS, env('LC_ROLE_ARN'), 'from-cam').catch((e) => e);
    assert.equal(err.code, 'NoPermission');
  });

  console.log(`PASS ${passed}`);
})().catch((err) => {
  console.error(`FAIL: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
