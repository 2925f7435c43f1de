package pcap

import (
	"math/rand/v2"
	"testing"

	"github.com/synscope/synscope/internal/packet"
)

// The open-addressing table against a Go map under random inserts and
// deletes (backward-shift deletion is the easy part to get wrong),
// growth and a reseed.
func TestFlowTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ft := newFlowTable()
	ref := map[flowKey]*Conn{}
	var keys []flowKey
	for step := range 200000 {
		if step == 100000 {
			ft.reseed()
		}
		if len(keys) > 0 && rng.IntN(3) == 0 {
			j := rng.IntN(len(keys))
			k := keys[j]
			i, c := ft.find(&k, ft.hash(&k))
			if c != ref[k] {
				t.Fatalf("step %d: find before delete got %p, want %p", step, c, ref[k])
			}
			ft.remove(i)
			delete(ref, k)
			keys[j] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
			continue
		}
		// Few distinct addresses and ports: many near-identical keys.
		var src, dst packet.Addr
		src[3], dst[3] = byte(rng.IntN(4)), byte(rng.IntN(4))
		v6 := rng.IntN(2) == 0
		if v6 {
			src[15] = 1
		}
		k, _ := keyOf(&src, &dst, uint16(rng.IntN(300)), 443, v6)
		if ref[k] != nil {
			continue
		}
		ft.reserve()
		h := ft.hash(&k)
		i, c := ft.find(&k, h)
		if c != nil {
			t.Fatalf("step %d: absent key found", step)
		}
		c = &Conn{key: k}
		ft.insert(i, h, c)
		ref[k] = c
		keys = append(keys, k)
	}
	if ft.n != len(ref) {
		t.Fatalf("n = %d, want %d", ft.n, len(ref))
	}
	for k, want := range ref {
		if _, c := ft.find(&k, ft.hash(&k)); c != want {
			t.Fatalf("key %v: got %p, want %p", k, c, want)
		}
	}
	used := 0
	for _, s := range ft.slots {
		if s.c != nil {
			used++
		}
	}
	if used != len(ref) {
		t.Fatalf("%d slots used, want %d", used, len(ref))
	}
}

func TestKeyOfSymmetric(t *testing.T) {
	a := packet.Addr{10, 0, 0, 1}
	b := packet.Addr{10, 0, 0, 2}
	k1, d1 := keyOf(&a, &b, 5000, 80, false)
	k2, d2 := keyOf(&b, &a, 80, 5000, false)
	if k1 != k2 || d1 == d2 {
		t.Fatalf("keyOf not symmetric: %v %v %v %v", k1, d1, k2, d2)
	}
	k3, _ := keyOf(&a, &b, 5000, 80, true)
	if k3 == k1 {
		t.Fatal("v4 and v6 keys collide")
	}
	// Same address both ends: the port orders the pair.
	k4, d4 := keyOf(&a, &a, 80, 5000, false)
	k5, d5 := keyOf(&a, &a, 5000, 80, false)
	if k4 != k5 || d4 == d5 {
		t.Fatal("keyOf with equal addresses not symmetric")
	}
}
