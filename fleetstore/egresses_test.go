package fleetstore

import (
	"testing"
)

func TestEgresses(t *testing.T) {
	_, rc := startRedis(t)
	ctx := testContext(t)
	e := NewEgresses(rc, "test")
	if got, err := e.Get(ctx, "EG_none"); err != nil || len(got) != 0 {
		t.Fatalf("record of an unknown egress: %v %v", got, err)
	}
	// Two egress ids that a naive key would mix up ("{" and "}" in an id).
	for _, put := range []struct{ id, field, doc string }{
		{"EG_a", "job", `{"owner":"one"}`},
		{"EG_a", "file:x.ogg", `{"instance":"one"}`},
		{"EG_a}", "job", `{"owner":"two"}`},
	} {
		if err := e.Put(ctx, put.id, put.field, []byte(put.doc)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.Get(ctx, "EG_a")
	if err != nil || len(got) != 2 || string(got["job"]) != `{"owner":"one"}` || string(got["file:x.ogg"]) != `{"instance":"one"}` {
		t.Fatalf("EG_a: %q %v", got, err)
	}
	if ttl := rc.TTL(ctx, e.key("EG_a")).Val(); ttl <= 0 || ttl > egressRetention {
		t.Fatalf("record kept for %v, want at most %v", ttl, egressRetention)
	}
	for i, want := range []bool{true, false} {
		if ok, err := e.Once(ctx, "EG_a", "concluding", "one"); ok != want || err != nil {
			t.Fatalf("Once #%d: %v %v, want %v", i, ok, err, want)
		}
	}
	if err := e.Delete(ctx, "EG_a"); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Get(ctx, "EG_a"); len(got) != 0 {
		t.Fatalf("deleted record still there: %q", got)
	}
	if got, _ := e.Get(ctx, "EG_a}"); string(got["job"]) != `{"owner":"two"}` {
		t.Fatalf("another egress's record went with it: %q", got)
	}
	if err := e.Put(ctx, "", "job", nil); err == nil {
		t.Fatal("an empty egress id was accepted")
	}
}
