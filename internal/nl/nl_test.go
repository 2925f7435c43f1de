package nl

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// reply builds a dump answer to req: one data message per payload, then
// NLMSG_DONE carrying doneErrno (0: none), all with req's sequence number;
// flags are added to every data message.
func reply(req netlink.Message, flags netlink.HeaderFlags, doneErrno int32, payloads ...[]byte) []netlink.Message {
	var out []netlink.Message
	for _, p := range payloads {
		out = append(out, netlink.Message{
			Header: netlink.Header{Type: unix.RTM_NEWROUTE, Flags: netlink.Multi | flags, Sequence: req.Header.Sequence, PID: req.Header.PID},
			Data:   p,
		})
	}
	done := netlink.Message{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi, Sequence: req.Header.Sequence, PID: req.Header.PID}}
	if doneErrno != 0 {
		done.Data = nlenc.Int32Bytes(-doneErrno)
	} else {
		done.Data = nlenc.Int32Bytes(0)
	}
	return append(out, done)
}

func fake(fn nltest.Func) *Conn { return Fake(fn, Config{}) }

var dumpReq = Request{Type: unix.RTM_GETROUTE, Flags: unix.NLM_F_DUMP}

func TestDumpInterruptedIsAskedAgain(t *testing.T) {
	calls := 0
	c := fake(func(reqs []netlink.Message) ([]netlink.Message, error) {
		calls++
		if reqs[0].Header.Flags&netlink.Request == 0 || reqs[0].Header.Flags&netlink.Dump != netlink.Dump {
			t.Errorf("request flags %v, want request|dump", reqs[0].Header.Flags)
		}
		if calls == 1 {
			return reply(reqs[0], netlink.DumpInterrupted, 0, []byte("old1"), []byte("old2")), nil
		}
		return reply(reqs[0], 0, 0, []byte("new1")), nil
	})
	msgs, err := c.Execute("dump", dumpReq)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("%d requests, want 2 (the interrupted dump asked again)", calls)
	}
	if len(msgs) != 1 || string(msgs[0].Data) != "new1" {
		t.Errorf("got %+v, want only the second dump's message", msgs)
	}
}

func TestDumpInterruptedEveryTimeIsAnError(t *testing.T) {
	calls := 0
	c := fake(func(reqs []netlink.Message) ([]netlink.Message, error) {
		calls++
		return reply(reqs[0], netlink.DumpInterrupted, 0, []byte("x")), nil
	})
	_, err := c.Execute("dump", dumpReq)
	if !errors.Is(err, ErrDumpInterrupted) {
		t.Fatalf("err = %v, want ErrDumpInterrupted", err)
	}
	if calls != DefaultDumpTries {
		t.Errorf("%d requests, want %d", calls, DefaultDumpTries)
	}
}

// The kernel may flag only the final NLMSG_DONE (the table changed after
// it built the last data message): that dump is asked again too.
func TestDumpInterruptedOnlyInDone(t *testing.T) {
	calls := 0
	c := fake(func(reqs []netlink.Message) ([]netlink.Message, error) {
		calls++
		m := reply(reqs[0], 0, 0, []byte("a"))
		if calls == 1 {
			m[len(m)-1].Header.Flags |= netlink.DumpInterrupted
		}
		return m, nil
	})
	var starts int
	var got []string
	err := c.Stream("dump", dumpReq, func() { starts++; got = got[:0] }, func(m Message) error {
		got = append(got, string(m.Data))
		return nil
	})
	if err != nil || calls != 2 || starts != 2 || len(got) != 1 {
		t.Fatalf("err %v, %d requests, %d starts, got %v; want the dump asked twice and one message kept", err, calls, starts, got)
	}
}

// A get (not a dump) is never repeated: the flag means nothing there.
func TestGetIsNotRetried(t *testing.T) {
	calls := 0
	c := fake(func(reqs []netlink.Message) ([]netlink.Message, error) {
		calls++
		return []netlink.Message{{Header: netlink.Header{Type: unix.RTM_NEWROUTE, Flags: netlink.DumpInterrupted, Sequence: reqs[0].Header.Sequence}, Data: []byte("r")}}, nil
	})
	msgs, err := c.Execute("get", Request{Type: unix.RTM_GETROUTE})
	if err != nil || len(msgs) != 1 || calls != 1 {
		t.Fatalf("msgs %v err %v calls %d", msgs, err, calls)
	}
}

func TestErrorInDone(t *testing.T) {
	c := fake(func(reqs []netlink.Message) ([]netlink.Message, error) {
		return reply(reqs[0], 0, int32(unix.EBUSY), []byte("a"), []byte("b")), nil
	})
	msgs, err := c.Execute("dump", dumpReq)
	if !errors.Is(err, unix.EBUSY) {
		t.Fatalf("err = %v (msgs %v), want EBUSY from NLMSG_DONE", err, msgs)
	}
	var ne *Error
	if !errors.As(err, &ne) || ne.Errno != unix.EBUSY {
		t.Errorf("err %v is not an *Error with EBUSY", err)
	}
}

func TestErrorMessage(t *testing.T) {
	c := fake(func(reqs []netlink.Message) ([]netlink.Message, error) {
		return nltest.Error(int(unix.EHOSTUNREACH), reqs)
	})
	_, err := c.Execute("route get", Request{Type: unix.RTM_GETROUTE})
	if !errors.Is(err, unix.EHOSTUNREACH) {
		t.Fatalf("err = %v, want EHOSTUNREACH", err)
	}
}

func TestAckIsNoMessage(t *testing.T) {
	c := fake(func(reqs []netlink.Message) ([]netlink.Message, error) {
		return nltest.Error(0, reqs)
	})
	msgs, err := c.Execute("add", Request{Type: unix.RTM_NEWROUTE, Flags: unix.NLM_F_ACK | unix.NLM_F_CREATE})
	if err != nil || len(msgs) != 0 {
		t.Fatalf("msgs %v err %v, want none and nil", msgs, err)
	}
}

func TestSequenceMismatchIsAnError(t *testing.T) {
	c := fake(func(reqs []netlink.Message) ([]netlink.Message, error) {
		m := reply(reqs[0], 0, 0, []byte("stale"))
		for i := range m {
			m[i].Header.Sequence++
		}
		return m, nil
	})
	if msgs, err := c.Execute("dump", dumpReq); err == nil {
		t.Fatalf("answer with another sequence number accepted: %v", msgs)
	}
}

func TestTimeoutFromFake(t *testing.T) {
	c := fake(func(reqs []netlink.Message) ([]netlink.Message, error) {
		return nil, os.ErrDeadlineExceeded
	})
	if _, err := c.Execute("dump", dumpReq); !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	// The late answer could still come: the Conn refuses further requests.
	if _, err := c.Execute("dump", dumpReq); !errors.Is(err, ErrBroken) {
		t.Fatalf("second request after a timeout: err = %v, want ErrBroken", err)
	}
}

func TestOverrun(t *testing.T) {
	c := fake(func(reqs []netlink.Message) ([]netlink.Message, error) {
		return nil, unix.ENOBUFS
	})
	_, err := c.Receive()
	if !errors.Is(err, ErrOverrun) || !errors.Is(err, unix.ENOBUFS) {
		t.Fatalf("err = %v, want ErrOverrun wrapping ENOBUFS", err)
	}
}

// A real socket (no privilege needed): a monitor that joined no group
// receives nothing, and Receive returns ErrTimeout after the configured
// timeout instead of blocking.
func TestReceiveTimeoutRealSocket(t *testing.T) {
	c, err := Dial(unix.NETLINK_ROUTE, Config{ReceiveTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Receive()
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 3*time.Second {
		t.Errorf("Receive returned after %s, want about 100ms", d)
	}
}

// A real socket: a dump of links answers with at least the loopback, and
// a request for a link that does not exist is ENODEV (kernel error
// unwrapped). Needs no privilege.
func TestExecuteRealSocket(t *testing.T) {
	c, err := Dial(unix.NETLINK_ROUTE, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hdr := make([]byte, unix.SizeofIfInfomsg)
	msgs, err := c.Execute("dump links", Request{Type: unix.RTM_GETLINK, Flags: unix.NLM_F_DUMP, Data: hdr})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) == 0 {
		t.Fatal("link dump returned nothing")
	}
	for _, m := range msgs {
		if m.Type != unix.RTM_NEWLINK {
			t.Errorf("message type %d in a link dump", m.Type)
		}
	}
	nlenc.PutInt32(hdr[4:8], 0x7ffffff0)
	if _, err := c.Execute("get link", Request{Type: unix.RTM_GETLINK, Data: hdr}); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("err = %v, want ENODEV", err)
	}
}

// TryReceive on a real, empty socket returns at once with ErrTimeout.
func TestTryReceiveRealSocket(t *testing.T) {
	c, err := Dial(unix.NETLINK_ROUTE, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.TryReceive(); !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("TryReceive waited %s", d)
	}
}

// A get with NLM_F_ACK is answered with the message and then the ACK: both
// are read, so the next request on the Conn does not find a stale ACK.
func TestGetWithAck(t *testing.T) {
	c := fake(func(reqs []netlink.Message) ([]netlink.Message, error) {
		data := netlink.Message{Header: netlink.Header{Type: unix.RTM_NEWROUTE, Sequence: reqs[0].Header.Sequence}, Data: []byte("r")}
		ack, _ := nltest.Error(0, reqs)
		return append([]netlink.Message{data}, ack...), nil
	})
	for i := 0; i < 2; i++ {
		msgs, err := c.Execute("get", Request{Type: unix.RTM_GETROUTE, Flags: unix.NLM_F_ACK})
		if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "r" {
			t.Fatalf("request %d: msgs %v err %v", i, msgs, err)
		}
	}
}

// A real socket: Wake ends a Receive that waits (a minute here) at once,
// and every later Receive returns ErrTimeout without waiting.
func TestWakeRealSocket(t *testing.T) {
	c, err := Dial(unix.NETLINK_ROUTE, Config{ReceiveTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { _, err := c.Receive(); done <- err }()
	time.Sleep(50 * time.Millisecond) // let it wait
	start := time.Now()
	c.Wake()
	select {
	case err := <-done:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Receive still waiting 5s after Wake")
	}
	t.Logf("woken after %s", time.Since(start))
	start = time.Now()
	if _, err := c.Receive(); !errors.Is(err, ErrTimeout) || time.Since(start) > time.Second {
		t.Errorf("Receive after Wake: %v after %s, want ErrTimeout at once", err, time.Since(start))
	}
}
