package fleetstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// A step acts as owner on the one key of a case. stale uses the lease that
// owner held before its latest one.
type step struct {
	op       string // claim, renew, release, holder
	owner    string
	stale    bool
	wantOK   bool
	wantWho  string // holder: who; claim refused: the holder it reports
	wantTok  string // "new": higher than any before; "same": the owner's previous token
	wantNone bool   // holder: nobody
}

func TestLeaseSteps(t *testing.T) {
	_, rc := startRedis(t)
	ctx := testContext(t)
	l := NewLeases(rc, "steps", time.Minute)
	for name, steps := range map[string][]step{
		"claim a free key": {
			{op: "holder", wantNone: true},
			{op: "claim", owner: "a", wantOK: true, wantTok: "new"},
			{op: "holder", wantOK: true, wantWho: "a"},
		},
		"second owner refused while held": {
			{op: "claim", owner: "a", wantOK: true, wantTok: "new"},
			{op: "claim", owner: "b", wantWho: "a"},
			{op: "renew", owner: "b"},
			{op: "holder", wantOK: true, wantWho: "a"},
		},
		"claiming one's own lease renews it and keeps its token": {
			{op: "claim", owner: "a", wantOK: true, wantTok: "new"},
			{op: "claim", owner: "a", wantOK: true, wantTok: "same"},
			{op: "renew", owner: "a", wantOK: true, wantTok: "same"},
			{op: "holder", wantOK: true, wantWho: "a"},
		},
		"release frees the key; the next holder's token is higher": {
			{op: "claim", owner: "a", wantOK: true, wantTok: "new"},
			{op: "release", owner: "a"},
			{op: "holder", wantNone: true},
			{op: "renew", owner: "a"},
			{op: "claim", owner: "b", wantOK: true, wantTok: "new"},
			{op: "holder", wantOK: true, wantWho: "b"},
		},
		"a stale token neither renews nor releases": {
			{op: "claim", owner: "a", wantOK: true, wantTok: "new"},
			{op: "release", owner: "a"},
			{op: "claim", owner: "a", wantOK: true, wantTok: "new"},
			{op: "renew", owner: "a", stale: true},
			{op: "release", owner: "a", stale: true},
			{op: "holder", wantOK: true, wantWho: "a"},
			{op: "renew", owner: "a", wantOK: true, wantTok: "same"},
		},
		"another owner's release does nothing": {
			{op: "claim", owner: "a", wantOK: true, wantTok: "new"},
			{op: "claim", owner: "b", wantWho: "a"}, // b keeps a's lease as reported
			{op: "release", owner: "b"},
			{op: "holder", wantOK: true, wantWho: "a"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			key := Key{Room: "room " + name, Participant: "p"}
			held := map[string][]Lease{} // owner: leases it got, latest last
			var maxToken int64
			for i, s := range steps {
				at := fmt.Sprintf("step %d (%s %s)", i, s.op, s.owner)
				mine := Lease{Key: key, Owner: s.owner}
				if h := held[s.owner]; len(h) > 0 {
					mine = h[len(h)-1]
					if s.stale {
						mine = h[len(h)-2]
					}
					mine.Owner = s.owner
				}
				var got Lease
				var ok bool
				var err error
				switch s.op {
				case "claim":
					got, ok, err = l.Claim(ctx, key, s.owner)
				case "renew":
					got, ok, err = l.Renew(ctx, mine)
				case "release":
					err = l.Release(ctx, mine)
				case "holder":
					got, ok, err = l.Holder(ctx, key)
				}
				if err != nil {
					t.Fatalf("%s: %v", at, err)
				}
				if s.op == "release" {
					continue
				}
				if ok != s.wantOK {
					t.Fatalf("%s: ok=%v, want %v (lease %+v)", at, ok, s.wantOK, got)
				}
				if s.wantNone && (ok || got != Lease{}) {
					t.Fatalf("%s: holder %+v, want none", at, got)
				}
				if s.wantWho != "" && got.Owner != s.wantWho {
					t.Fatalf("%s: owner %q, want %q", at, got.Owner, s.wantWho)
				}
				if got.Owner != "" {
					if got.Key != key {
						t.Fatalf("%s: key %v, want %v", at, got.Key, key)
					}
					if left := time.Until(got.Expires); left <= 50*time.Second || left > time.Minute {
						t.Fatalf("%s: expires in %v, want about a minute", at, left)
					}
				}
				switch s.wantTok {
				case "new":
					if got.Token <= maxToken {
						t.Fatalf("%s: token %d, want above %d", at, got.Token, maxToken)
					}
				case "same":
					if got.Token != mine.Token {
						t.Fatalf("%s: token %d, want %d kept", at, got.Token, mine.Token)
					}
				}
				if s.op == "holder" && ok {
					if last := held[got.Owner]; len(last) == 0 || last[len(last)-1].Token != got.Token {
						t.Fatalf("%s: holder %+v is not %s's latest lease", at, got, got.Owner)
					}
				}
				if s.op == "renew" && !ok && got != (Lease{}) {
					t.Fatalf("%s: lost renew returned %+v", at, got)
				}
				if got.Owner != "" && s.op != "holder" {
					held[s.owner] = append(held[s.owner], got)
				}
				maxToken = max(maxToken, got.Token)
			}
		})
	}
}

func TestExpiredLeaseGoesToAnotherOwner(t *testing.T) {
	_, rc := startRedis(t)
	ctx := testContext(t)
	const ttl = 300 * time.Millisecond
	l := NewLeases(rc, "expiry", ttl)
	key := Key{Room: "r", Participant: "p"}

	a, ok, err := l.Claim(ctx, key, "a")
	if err != nil || !ok {
		t.Fatalf("claim a: %v %v", ok, err)
	}
	// Renewing keeps it past several ttls.
	for range 4 {
		time.Sleep(ttl / 3)
		if a, ok, err = l.Renew(ctx, a); err != nil || !ok {
			t.Fatalf("renew a: %v %v", ok, err)
		}
	}
	if _, ok, _ := l.Claim(ctx, key, "b"); ok {
		t.Fatal("b took a renewed lease")
	}

	// a stops renewing: the lease expires on its own.
	stopped := time.Now()
	eventually(t, 3*time.Second, "lease expiry", func() bool {
		_, held, err := l.Holder(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return !held
	})
	if gone := time.Since(stopped); gone < ttl-100*time.Millisecond {
		t.Fatalf("lease gone %v after the last renew, want about %v", gone, ttl)
	}
	if !a.Expires.Before(time.Now()) {
		t.Fatalf("a.Expires %v lies past the expiry", a.Expires)
	}

	b, ok, err := l.Claim(ctx, key, "b")
	if err != nil || !ok {
		t.Fatalf("claim b after expiry: %v %v", ok, err)
	}
	if b.Token <= a.Token {
		t.Fatalf("b's token %d is not above a's %d", b.Token, a.Token)
	}
	if _, ok, err := l.Renew(ctx, a); err != nil || ok {
		t.Fatalf("stale renew by a: ok=%v err=%v, want lost", ok, err)
	}
	if err := l.Release(ctx, a); err != nil {
		t.Fatal(err)
	}
	if h, ok, err := l.Holder(ctx, key); err != nil || !ok || h.Owner != "b" || h.Token != b.Token {
		t.Fatalf("after a's stale release the holder is %+v %v %v, want b with token %d", h, ok, err, b.Token)
	}
	if _, ok, err := l.Renew(ctx, b); err != nil || !ok {
		t.Fatalf("renew b: %v %v", ok, err)
	}
}

func TestConcurrentClaimsOneOwner(t *testing.T) {
	_, rc := startRedis(t)
	ctx := testContext(t)
	l := NewLeases(rc, "race", time.Minute)
	key := Key{Room: "r", Participant: "p"}
	const n = 20
	leases := make([]Lease, n)
	oks := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			leases[i], oks[i], errs[i] = l.Claim(ctx, key, fmt.Sprintf("owner-%d", i))
		})
	}
	close(start)
	wg.Wait()
	var winners []int
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if oks[i] {
			winners = append(winners, i)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("winners %v, want exactly one", winners)
	}
	w := leases[winners[0]]
	for i := range n {
		if leases[i].Owner != w.Owner || leases[i].Token != w.Token {
			t.Errorf("claim %d saw %+v, want the winner %s token %d", i, leases[i], w.Owner, w.Token)
		}
	}
}

func hostileKeys() []Key {
	kb := strings.Repeat("x", 1024)
	return []Key{
		{Room: "a:b", Participant: "c"}, {Room: "a", Participant: "b:c"},
		{Room: "a", Participant: "b:"}, {Room: "a:", Participant: "b"},
		{Room: "a.b", Participant: "c"}, {Room: "a", Participant: "b.c"},
		{Room: "a", Participant: "b"}, {Room: "ab", Participant: "x"}, {Room: "a", Participant: "bx"},
		{Room: "{a}", Participant: "b"}, {Room: "a", Participant: "{b}"}, {Room: "}", Participant: "{"},
		{Room: "*", Participant: "?"}, {Room: "[a-z]", Participant: "\\"},
		{Room: "\x00", Participant: "\n"}, {Room: "\n", Participant: "\x00"},
		{Room: "комната", Participant: "参加者 🎙"}, {Room: "комната参", Participant: "加者 🎙"},
		{Room: kb, Participant: kb}, {Room: kb + "x", Participant: kb[1:]}, {Room: kb[1:], Participant: "x" + kb},
		{Room: "a=", Participant: "b"}, {Room: "YQ", Participant: "Yg"}, // base64 look-alikes
		// a track of a participant is another recording than the participant
		{Room: "a", Participant: "b", Track: "TR_1"}, {Room: "a", Participant: "b", Track: "TR_2"},
		{Room: "a", Participant: "b.TR_1"},
	}
}

func TestHostileNamesNeverCollide(t *testing.T) {
	_, rc := startRedis(t)
	ctx := testContext(t)
	l := NewLeases(rc, "hostile", time.Minute)
	keys := hostileKeys()
	for i, k := range keys {
		lease, ok, err := l.Claim(ctx, k, fmt.Sprint("owner-", i))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Fatalf("claim %v refused: it shares a key with the one held by %s", k, lease.Owner)
		}
	}
	for i, k := range keys {
		h, ok, err := l.Holder(ctx, k)
		if err != nil || !ok || h.Owner != fmt.Sprint("owner-", i) || h.Key != k {
			t.Fatalf("holder of %v = %+v %v %v", k, h, ok, err)
		}
	}
	all, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(keys) {
		t.Fatalf("List has %d leases, want %d", len(all), len(keys))
	}
	for _, got := range all {
		i := slices.Index(keys, got.Key)
		if i < 0 || got.Owner != fmt.Sprint("owner-", i) {
			t.Errorf("listed %+v, which was not claimed so", got)
		}
	}
	for _, k := range []Key{{Room: "", Participant: "p"}, {Room: "r", Participant: ""}} {
		if _, _, err := l.Claim(ctx, k, "o"); err == nil {
			t.Errorf("claim of %v did not fail", k)
		}
	}
	if _, _, err := l.Claim(ctx, keys[0], ""); err == nil {
		t.Error("claim by an empty owner did not fail")
	}
}

func TestList(t *testing.T) {
	_, rc := startRedis(t)
	ctx := testContext(t)
	l := NewLeases(rc, "fleet", time.Minute)
	other := NewLeases(rc, "fleet:other", time.Minute)
	// More than one pipeline batch.
	const n = 300
	want := map[Key]Lease{}
	for i := range n {
		k := Key{Room: fmt.Sprint("room-", i%7), Participant: fmt.Sprint("p-", i)}
		lease, ok, err := l.Claim(ctx, k, fmt.Sprint("inst-", i%3))
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		want[k] = lease
	}
	for i := range 5 {
		k := Key{Room: fmt.Sprint("room-", i%7), Participant: fmt.Sprint("p-", i)}
		if err := l.Release(ctx, want[k]); err != nil {
			t.Fatal(err)
		}
		delete(want, k)
	}
	if _, ok, err := other.Claim(ctx, Key{Room: "elsewhere", Participant: "p"}, "inst-0"); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := rc.Set(ctx, "fleet:lease:{junk}", "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}

	all, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(want) {
		t.Fatalf("List has %d leases, want %d", len(all), len(want))
	}
	for _, got := range all {
		w, ok := want[got.Key]
		if !ok || got.Owner != w.Owner || got.Token != w.Token {
			t.Fatalf("listed %+v, want %+v", got, w)
		}
		if left := time.Until(got.Expires); left < 50*time.Second || left > time.Minute {
			t.Fatalf("listed lease expires in %v", left)
		}
		delete(want, got.Key)
	}
}

func TestRedisOutage(t *testing.T) {
	srv, rc := startRedis(t)
	ctx := testContext(t)
	l := NewLeases(rc, "outage", time.Minute)
	d := NewDedup(rc, "outage", time.Minute)
	key := Key{Room: "r", Participant: "p"}
	a, ok, err := l.Claim(ctx, key, "a")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// Each operation fails on its own (the client retries the dial for
	// about 1.7 s), so they run side by side.
	ops := map[string]func(ctx context.Context) error{
		"claim": func(ctx context.Context) error {
			_, _, err := l.Claim(ctx, Key{Room: "r2", Participant: "p"}, "a")
			return err
		},
		"renew":   func(ctx context.Context) error { _, _, err := l.Renew(ctx, a); return err },
		"release": func(ctx context.Context) error { return l.Release(ctx, a) },
		"holder":  func(ctx context.Context) error { _, _, err := l.Holder(ctx, key); return err },
		"list":    func(ctx context.Context) error { _, err := l.List(ctx); return err },
		"first":   func(ctx context.Context) error { _, err := d.First(ctx, "ev"); return err },
	}
	var wg sync.WaitGroup
	for op, f := range ops {
		wg.Go(func() {
			opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := f(opCtx)
			if err == nil || !strings.HasPrefix(err.Error(), "fleetstore: ") || opCtx.Err() != nil {
				t.Errorf("%s with Redis down: %v, want a fleetstore error before the deadline", op, err)
			}
		})
	}
	wg.Wait()

	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The client gives up dialling after repeated failures and tries again
	// in the background about once a second.
	var renewed bool
	eventually(t, 5*time.Second, "a working client after the restart", func() bool {
		_, ok, err := l.Renew(ctx, a)
		renewed = ok
		return err == nil
	})
	// The restarted Redis lost everything: a's lease is gone, and the next
	// token is still higher than a's.
	if renewed {
		t.Fatal("renew after restart kept a lease Redis lost")
	}
	b, ok, err := l.Claim(ctx, key, "b")
	if err != nil || !ok {
		t.Fatalf("claim after restart: %v %v", ok, err)
	}
	if b.Token <= a.Token {
		t.Fatalf("token after restart %d, want above %d", b.Token, a.Token)
	}
	if first, err := d.First(ctx, "ev"); err != nil || !first {
		t.Fatalf("dedup after restart: %v %v", first, err)
	}
}

func TestConstructorsRefuseBadConfig(t *testing.T) {
	_, rc := startRedis(t)
	for name, f := range map[string]func(){
		"empty prefix":     func() { NewLeases(rc, "", time.Second) },
		"brace in prefix":  func() { NewLeases(rc, "a{b", time.Second) },
		"glob in prefix":   func() { NewDedup(rc, "a*", time.Second) },
		"zero ttl":         func() { NewLeases(rc, "a", 0) },
		"sub-ms ttl":       func() { NewDedup(rc, "a", time.Microsecond) },
		"nil client":       func() { NewLeases(nil, "a", time.Second) },
		"nil dedup client": func() { NewDedup(nil, "a", time.Second) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("did not panic")
				}
			}()
			f()
		})
	}
	for prefix, ok := range map[string]bool{
		"trackrec": true, "trackrec:fleet-1.v2_x": true, "": false, "a b": false,
		"a{b}": false, "a?": false, "a[b]": false, "a\\b": false, "é": false, strings.Repeat("a", 129): false,
	} {
		if err := CheckPrefix(prefix); (err == nil) != ok {
			t.Errorf("CheckPrefix(%q) = %v, want ok=%v", prefix, err, ok)
		}
	}
}

// A lease handed over passes straight to the new owner with a higher token:
// the old owner's renewal fails, nobody else may take it on the way, and a
// transfer from someone who does not hold it takes nothing.
func TestTransferHandsALeaseOver(t *testing.T) {
	_, rc := startRedis(t)
	ctx := testContext(t)
	l := NewLeases(rc, "transfer", time.Minute)
	key := Key{Room: "r", Participant: "p"}
	a, ok, err := l.Claim(ctx, key, "a")
	if err != nil || !ok {
		t.Fatalf("claim a: %v %v", ok, err)
	}
	for _, tc := range []struct {
		name, from, to string
		want           bool
	}{
		{"from a non-holder", "c", "b", false},
		{"from the holder", "a", "b", true},
		{"again, now b holds it", "a", "c", false},
	} {
		got, ok, err := l.Transfer(ctx, key, tc.from, tc.to)
		if err != nil || ok != tc.want {
			t.Fatalf("%s: ok=%v err=%v, want %v", tc.name, ok, err, tc.want)
		}
		if ok && (got.Owner != tc.to || got.Token <= a.Token) {
			t.Fatalf("%s: lease %+v, want %s with a token above %d", tc.name, got, tc.to, a.Token)
		}
	}
	if _, ok, err := l.Renew(ctx, a); err != nil || ok {
		t.Fatalf("a renewed a lease it handed over: ok=%v err=%v", ok, err)
	}
	if h, ok, err := l.Holder(ctx, key); err != nil || !ok || h.Owner != "b" {
		t.Fatalf("holder %+v %v %v, want b", h, ok, err)
	}
	free := Key{Room: "r", Participant: "free"}
	if got, ok, err := l.Transfer(ctx, free, "a", "b"); err != nil || !ok || got.Owner != "b" {
		t.Fatalf("transfer of a free key: %+v %v %v, want taken by b", got, ok, err)
	}
	if _, _, err := l.Transfer(ctx, key, "", "b"); err == nil {
		t.Fatal("a transfer from nobody was accepted")
	}
}
