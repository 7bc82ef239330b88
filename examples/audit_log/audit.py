# An audit log of user hashes, kept by Redis itself: every write to a key under user: is appended to
# the stream 'audit' by the same server, in the same step, before the writing command replies (sync mode).
# Any client in any language writing to user:* is audited; no application code can forget it.

def audit(r):
    execute('XADD', 'audit', '*', 'key', r['key'], 'event', r['event'])


GB('KeysReader', desc='audit log of user hashes').foreach(audit).register(
    prefix='user:*', eventTypes=['hset', 'hdel', 'del'], readValue=False, mode='sync')
