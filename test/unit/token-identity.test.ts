// Token identities: what a TokenReview answer says about the calling pod.
import t from 'tap'
import { identityOf, tokenExpiry } from '../../src/registration/auth.js'

t.test('token identities', async (t) => {
  const extra = { 'authentication.kubernetes.io/pod-name': ['orders-1'], 'authentication.kubernetes.io/pod-uid': ['u-1'] }
  t.same(identityOf({ authenticated: true, audiences: ['enlist'], user: { username: 'system:serviceaccount:shop:orders', extra } }), { namespace: 'shop', serviceAccount: 'orders', pod: 'orders-1', uid: 'u-1' })
  t.equal(identityOf({ authenticated: false, error: 'expired' }), 'token rejected by the apiserver')
  t.equal(identityOf({ authenticated: true, audiences: ['other'], user: { username: 'system:serviceaccount:a:b', extra } }), 'token is not for audience enlist')
  t.equal(identityOf({ authenticated: true, audiences: ['enlist'], user: { username: 'alice', extra } }), 'token is not a service-account token')
  t.match(identityOf({ authenticated: true, audiences: ['enlist'], user: { username: 'system:serviceaccount:a:b' } }), /not bound to a pod/)
  const jwt = (payload: object) => `h.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.s`
  t.equal(tokenExpiry(jwt({ exp: 2000000000 })), 2000000000000)
  t.equal(tokenExpiry(jwt({})), undefined)
  t.equal(tokenExpiry('opaque'), undefined)
  t.equal(tokenExpiry('a.!!!.c'), undefined)
})
