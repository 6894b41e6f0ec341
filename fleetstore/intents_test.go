package fleetstore

import (
	"context"
	"testing"
	"time"
)

func TestIntents(t *testing.T) {
	_, rc := startRedis(t)
	ctx := context.Background()
	in := NewIntents(rc, "test")
	a := Intent{Key: Key{Room: "r", Participant: "a.b"}, ID: "RC_1", Since: time.Unix(100, 0).UTC()}
	b := Intent{Key: Key{Room: "r.a", Participant: "b"}, ID: "RC_2", Wait: true} // would collide under naive joining
	for _, x := range []Intent{a, b} {
		if err := in.Put(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	list := func() map[Key]Intent {
		l, err := in.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[Key]Intent{}
		for _, x := range l {
			m[x.Key] = x
		}
		return m
	}
	if m := list(); len(m) != 2 || m[a.Key].ID != "RC_1" || !m[b.Key].Wait || !m[a.Key].Since.Equal(a.Since) {
		t.Fatalf("intents %+v", m)
	}
	if got, ok, err := in.Get(ctx, b.Key); !ok || err != nil || got.ID != "RC_2" || !got.Wait {
		t.Fatalf("Get: %+v %v %v", got, ok, err)
	}
	if _, ok, err := in.Get(ctx, Key{Room: "r", Participant: "nobody"}); ok || err != nil {
		t.Fatalf("Get of nothing wanted: %v %v", ok, err)
	}
	// A stale id deletes nothing; the current one does.
	if err := in.Delete(ctx, a.Key, "RC_old"); err != nil {
		t.Fatal(err)
	}
	if m := list(); len(m) != 2 {
		t.Fatalf("a stale delete removed an intent: %+v", m)
	}
	a2 := a
	a2.ID = "RC_3"
	if err := in.Put(ctx, a2); err != nil {
		t.Fatal(err)
	}
	if err := in.Delete(ctx, a.Key, "RC_1"); err != nil {
		t.Fatal(err)
	}
	if m := list(); m[a.Key].ID != "RC_3" {
		t.Fatalf("the older recording's delete removed the newer one: %+v", m)
	}
	if err := in.Delete(ctx, a.Key, "RC_3"); err != nil {
		t.Fatal(err)
	}
	if m := list(); len(m) != 1 || m[b.Key].ID != "RC_2" {
		t.Fatalf("after delete: %+v", m)
	}
	if err := in.Put(ctx, Intent{Key: Key{Room: "", Participant: "x"}}); err == nil {
		t.Error("an intent without a room was stored")
	}
}
