// Token identities: what a TokenReview answer says about the calling pod.
import t from 'tap'
import { identityOf, tokenExpiry } from '../../src/registration/auth.js'

t.test('a TokenReview is a pass only with the audience named and a pod bound', async (t) => {
  const extra = { 'authentication.kubernetes.io/pod-name': ['orders-1'], 'authentication.kubernetes.io/pod-uid': ['u-1'] }
  const user = { username: 'system:serviceaccount:shop:orders', extra }
  t.same(identityOf({ authenticated: true, audiences: ['enlist'], user }), { namespace: 'shop', serviceAccount: 'orders', pod: 'orders-1', uid: 'u-1' })
  t.equal(identityOf({ authenticated: true, user }), 'token is not for audience enlist', 'no audiences in the answer: not a pass')
  t.equal(identityOf({ authenticated: true, audiences: ['other'], user: { username: 'system:serviceaccount:a:b', extra } }), 'token is not for audience enlist')
  t.equal(identityOf({ authenticated: false, error: 'expired' }), 'token rejected by the apiserver')
  t.equal(identityOf({ authenticated: false, error: 'token for uid 1234 is invalid', audiences: ['enlist'] }), 'token rejected by the apiserver', "the apiserver's reason is not passed on")
  t.equal(identityOf({ authenticated: true, audiences: ['enlist'], user: { username: 'alice', extra } }), 'token is not a service-account token')
  t.match(identityOf({ authenticated: true, audiences: ['enlist'], user: { username: 'alice' } }), /not a service-account token/, 'without pod claims too')
  t.match(identityOf({ authenticated: true, audiences: ['enlist'], user: { username: 'system:serviceaccount:a:b' } }), /not bound to a pod/)
})

t.test('token expiry, read from the JWT payload', async (t) => {
  const jwt = (payload: object) => `h.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.s`
  t.equal(tokenExpiry(jwt({ exp: 2000000000 })), 2000000000000)
  t.equal(tokenExpiry(jwt({})), undefined)
  t.equal(tokenExpiry('opaque'), undefined)
  t.equal(tokenExpiry('a.!!!.c'), undefined)
})
