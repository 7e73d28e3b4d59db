package iso8583

import (
	"bufio"
	"context"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	moov "github.com/moov-io/iso8583"
)

// BenchmarkPackUnpack0200: the 0200 of a QuickPass payment with a full
// DE55 (about 290 bytes), packed and unpacked once per op.
func BenchmarkPackUnpack0200(b *testing.B) {
	req := sample0200(b)
	wire, err := Pack(req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast/flat", func(b *testing.B) {
		m := &Message{}
		if err := m.Marshal(req); err != nil {
			b.Fatal(err)
		}
		in := &Message{}
		var out []byte
		b.ReportAllocs()
		for b.Loop() {
			out, err = m.AppendPack(out[:0])
			if err != nil {
				b.Fatal(err)
			}
			if err := in.Unpack(out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast/typed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := Pack(req)
			if err != nil {
				b.Fatal(err)
			}
			var got AuthRequest
			if err := Unpack(out, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("moov/typed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := moov.NewMessage(Spec)
			if err := m.Marshal(req); err != nil {
				b.Fatal(err)
			}
			out, err := m.Pack()
			if err != nil {
				b.Fatal(err)
			}
			in := moov.NewMessage(Spec)
			if err := in.Unpack(out); err != nil {
				b.Fatal(err)
			}
			var got AuthRequest
			if err := in.Unmarshal(&got); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("moov/flat", func(b *testing.B) {
		m := moov.NewMessage(Spec)
		if err := m.Unpack(wire); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			out, err := m.Pack()
			if err != nil {
				b.Fatal(err)
			}
			in := moov.NewMessage(Spec)
			if err := in.Unpack(out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLink: request/response pairs over loopback TCP with 64 requests
// in flight, the 0200 above packed and unpacked on both sides. The pairs/s
// metric is the figure of issue 3.
func BenchmarkLink(b *testing.B) {
	b.Run("fast", func(b *testing.B) {
		_, addr := MustServe(b, ServerConfig{}, typedEchoHandler)
		c := MustDial(b, ClientConfig{Addr: addr, MaxInFlight: 64, EchoInterval: -1})
		type worker struct {
			req AuthRequest
			msg Message
		}
		workers := make([]worker, 64)
		for i := range workers {
			workers[i].req = *sample0200(b)
			workers[i].req.TerminalID = termIDs[i]
		}
		runPairs(b, 64, func(w, i int) error {
			wk := &workers[w]
			wk.req.STAN = FormatSTAN(uint32(i))
			if err := wk.msg.Marshal(&wk.req); err != nil {
				return err
			}
			resp, err := c.Send(context.Background(), &wk.msg)
			if err != nil {
				return err
			}
			var ar AuthResponse
			if err := resp.Unmarshal(&ar); err != nil {
				return err
			}
			if ar.ResponseCode != "00" || ar.STAN != wk.req.STAN {
				b.Error("wrong answer")
			}
			return nil
		})
	})
	b.Run("moov", func(b *testing.B) {
		addr := moovEchoServer(b)
		c := newMoovClient(b, addr)
		reqs := make([]AuthRequest, 64)
		for i := range reqs {
			reqs[i] = *sample0200(b)
			reqs[i].TerminalID = termIDs[i]
		}
		runPairs(b, 64, func(w, i int) error {
			reqs[w].STAN = FormatSTAN(uint32(i))
			return c.send(&reqs[w])
		})
	})
	b.Run("raw-frames", func(b *testing.B) {
		addr := rawEchoServer(b)
		c := newMoovClient(b, addr)
		wire, err := Pack(sample0200(b))
		if err != nil {
			b.Fatal(err)
		}
		runPairs(b, 64, func(worker, i int) error {
			return c.sendRaw(wire, worker)
		})
	})
}

var termIDs = func() []string {
	ids := make([]string, 64)
	for i := range ids {
		ids[i] = "TERM" + FormatSTAN(uint32(i))[2:]
	}
	return ids
}()

// runPairs runs b.N round trips from `workers` goroutines and reports pairs/s.
func runPairs(b *testing.B, workers int, do func(worker, i int) error) {
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := do(w, int(i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pairs/s")
}

// The moov baseline: the same framing and pipelining, but moov-io's
// Message (Marshal/Pack, Unpack/Unmarshal) on both sides, as
// iso8583-connection would do. Matching is by worker: each worker has one
// request in flight and its own terminal id.

type moovClient struct {
	conn    net.Conn
	out     chan []byte
	waiters [64]chan []byte
}

func newMoovClient(b *testing.B, addr string) *moovClient {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	c := &moovClient{conn: conn, out: make(chan []byte, 256)}
	for i := range c.waiters {
		c.waiters[i] = make(chan []byte, 1)
	}
	b.Cleanup(func() { conn.Close(); close(c.out) })
	go batchWriter(conn, c.out)
	go func() {
		r := bufio.NewReader(conn)
		for {
			buf, err := ReadFrame(r, nil, 0)
			if err != nil {
				return
			}
			// Terminal id is in the frame; the raw echo returns what we sent.
			m := &Message{}
			w := 0
			if m.Unpack(buf) == nil {
				w = termIndex(m.String(FieldTerminalID))
			}
			c.waiters[w] <- buf
		}
	}()
	return c
}

func termIndex(id string) int {
	for i, t := range termIDs {
		if t == id {
			return i
		}
	}
	return 0
}

func (c *moovClient) write(frame []byte) error {
	c.out <- frame
	return nil
}

// batchWriter is the same batching as the link's writer: flush when the
// queue is empty after one yield.
func batchWriter(conn net.Conn, out <-chan []byte) {
	w := bufio.NewWriterSize(conn, linkWriteBufferBytes)
	for f := range out {
		if _, err := w.Write(f); err != nil {
			return
		}
		if len(out) == 0 {
			runtime.Gosched()
		}
		if len(out) == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

func (c *moovClient) send(req *AuthRequest) error {
	m := moov.NewMessage(Spec)
	if err := m.Marshal(req); err != nil {
		return err
	}
	out, err := m.Pack()
	if err != nil {
		return err
	}
	frame, err := AppendFrame(nil, out, 0)
	if err != nil {
		return err
	}
	if err := c.write(frame); err != nil {
		return err
	}
	buf := <-c.waiters[termIndex(req.TerminalID)]
	in := moov.NewMessage(Spec)
	if err := in.Unpack(buf); err != nil {
		return err
	}
	var resp AuthResponse
	return in.Unmarshal(&resp)
}

func (c *moovClient) sendRaw(wire []byte, worker int) error {
	// The raw echo answers whatever it gets; tag the frame with the
	// worker's terminal by sending its own copy.
	m := &Message{}
	if err := m.Unpack(wire); err != nil {
		return err
	}
	m.SetString(FieldTerminalID, termIDs[worker])
	frame, err := AppendPackedFrame(nil, m, 0)
	if err != nil {
		return err
	}
	if err := c.write(frame); err != nil {
		return err
	}
	<-c.waiters[worker]
	return nil
}

// answerOf is what an issuer-like handler answers to a 0200.
func answerOf(req *AuthRequest) AuthResponse {
	return AuthResponse{MTI: ResponseMTI(req.MTI), PAN: req.PAN, ProcessingCode: req.ProcessingCode, Amount: req.Amount,
		TransmissionTime: req.TransmissionTime, STAN: req.STAN, RRN: req.RRN, TerminalID: req.TerminalID,
		MerchantID: req.MerchantID, Currency: req.Currency, ICC: req.ICC, ResponseCode: "00", AuthCode: "123456"}
}

// typedEchoHandler unpacks the request into AuthRequest and packs an
// AuthResponse, as the issuer does.
func typedEchoHandler(_ context.Context, m *Message) (*Message, error) {
	var req AuthRequest
	if err := m.Unmarshal(&req); err != nil {
		return nil, err
	}
	resp := answerOf(&req)
	out := &Message{}
	if err := out.Marshal(&resp); err != nil {
		return nil, err
	}
	return out, nil
}

func moovEchoServer(b *testing.B) string {
	return serveFrames(b, func(in []byte) []byte {
		m := moov.NewMessage(Spec)
		if err := m.Unpack(in); err != nil {
			return nil
		}
		var req AuthRequest
		if err := m.Unmarshal(&req); err != nil {
			return nil
		}
		resp := answerOf(&req)
		out := moov.NewMessage(Spec)
		if err := out.Marshal(&resp); err != nil {
			return nil
		}
		packed, err := out.Pack()
		if err != nil {
			return nil
		}
		return packed
	})
}

func rawEchoServer(b *testing.B) string {
	return serveFrames(b, func(in []byte) []byte { return append([]byte(nil), in...) })
}

// serveFrames is a pipelined frame server: a reader hands each frame to a
// goroutine running fn, and a batching writer sends the answers.
func serveFrames(b *testing.B, fn func([]byte) []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			out := make(chan []byte, 256)
			go batchWriter(conn, out)
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				for {
					buf, err := ReadFrame(r, nil, 0)
					if err != nil {
						return
					}
					go func() {
						if resp := fn(buf); resp != nil {
							if frame, err := AppendFrame(nil, resp, 0); err == nil {
								out <- frame
							}
						}
					}()
				}
			}()
		}
	}()
	return ln.Addr().String()
}
