package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/promreg"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths the server wrapper answers itself.
const (
	HealthPath  = "/healthz"
	MetricsPath = "/metrics"
)

// routeUnmatched labels requests no ServeMux pattern matched, so request
// metrics stay bounded whatever paths clients send.
const routeUnmatched = "unmatched"

// maxStackBytes bounds the stack trace logged for a panic.
const maxStackBytes = 8 << 10

// NewServer returns an *http.Server for party serving h, with timeouts and
// header limits set and h wrapped by Handler (healthz, metrics, panic
// recovery, request metrics). See Handler for reg. Start it with Serve.
func NewServer(party string, h http.Handler, log *slog.Logger, reg prometheus.Registerer) *http.Server {
	log = maskedLogger(log).With("party", party)
	return &http.Server{
		Handler:           Handler(party, h, log, reg),
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Handler wraps h with what every party serves: GET /healthz, GET /metrics,
// panic recovery (500 JSON), the party's masking logger in each request's
// context (see Logger), and request count and latency by route pattern.
//
// Metrics go to reg. Each party should have its own registry so that several
// parties can run in one process: with reg nil a new *prometheus.Registry is
// made; /metrics serves reg when it is also a prometheus.Gatherer (such as a
// *prometheus.Registry), otherwise a private registry holding the HTTP
// metrics. Go runtime and process collectors are added unless reg already
// has them.
func Handler(party string, h http.Handler, log *slog.Logger, reg prometheus.Registerer) http.Handler {
	log = maskedLogger(log)
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	gatherer, ok := reg.(prometheus.Gatherer)
	m := newMetrics(party)
	m.register(reg)
	registerRuntime(reg)
	if !ok {
		private := prometheus.NewRegistry()
		m.register(private)
		registerRuntime(private)
		gatherer = private
	}
	metricsHandler := promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
	return &wrapper{party: party, inner: h, log: log, metrics: m, metricsHandler: metricsHandler}
}

type wrapper struct {
	party          string
	inner          http.Handler
	log            *slog.Logger
	metrics        *metrics
	metricsHandler http.Handler
}

func (s *wrapper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case HealthPath:
		if !getOrHead(w, r) {
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	case MetricsPath:
		if !getOrHead(w, r) {
			return
		}
		s.metricsHandler.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w}
	id := r.Header.Get(RequestIDHeader)
	if !validRequestID(id) {
		id = newRequestID()
	}
	w.Header()[RequestIDHeader] = []string{id} // already in canonical form
	r = r.WithContext(context.WithValue(r.Context(), reqKey{}, reqInfo{log: s.log, id: id}))
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				s.observe(r, rw, start)
				panic(p)
			}
			stack := debug.Stack()
			if len(stack) > maxStackBytes {
				stack = stack[:maxStackBytes]
			}
			s.log.ErrorContext(r.Context(), "panic serving request",
				"method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(stack))
			if !rw.wrote {
				WriteError(rw, r, mipay.Errorf(mipay.EINTERNAL, "panic: %v", p))
			} else {
				rw.status = http.StatusInternalServerError
			}
		}
		s.observe(r, rw, start)
	}()
	s.inner.ServeHTTP(rw, r)
}

func (s *wrapper) observe(r *http.Request, rw *statusWriter, start time.Time) {
	route := r.Pattern // set by http.ServeMux when it matched
	if route == "" {
		route = routeUnmatched
	}
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	took := time.Since(start)
	s.metrics.requests.WithLabelValues(route, statusLabel(status)).Inc()
	s.metrics.latency.WithLabelValues(route).Observe(took.Seconds())
	// An access log at debug level: off in normal runs, and then it costs
	// one Enabled check. Paths are masked like every log line.
	if ctx := r.Context(); s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.DebugContext(ctx, "request", "method", r.Method, "path", r.URL.Path, "route", route,
			"status", status, "took", took, "request_id", RequestID(ctx))
	}
}

// statusLabel avoids formatting the common statuses on every request.
func statusLabel(status int) string {
	switch status {
	case http.StatusOK:
		return "200"
	case http.StatusCreated:
		return "201"
	case http.StatusNoContent:
		return "204"
	case http.StatusBadRequest:
		return "400"
	case http.StatusNotFound:
		return "404"
	case http.StatusInternalServerError:
		return "500"
	}
	return strconv.Itoa(status)
}

func getOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	WriteError(w, r, mipay.Errorf(mipay.EINVALID, "method %s not allowed", r.Method))
	return false
}

// statusWriter records the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status = code
		w.wrote = code >= 200 // 1xx informational headers may precede the real one
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status = http.StatusOK
		w.wrote = true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (Flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps streaming handlers working through the wrapper.
func (w *statusWriter) Flush() {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(party string) *metrics {
	labels := prometheus.Labels{"party": party}
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mipay", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests served, by route pattern and status.", ConstLabels: labels,
		}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mipay", Subsystem: "http", Name: "request_duration_seconds",
			Help: "HTTP request latency, by route pattern.", ConstLabels: labels,
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
	}
}

// register adds m to reg; when the same metrics are already there (a second
// server of the same party on one registry) it shares them.
func (m *metrics) register(reg prometheus.Registerer) {
	if c, ok := registerOnce(reg, m.requests).(*prometheus.CounterVec); ok {
		m.requests = c
	}
	if h, ok := registerOnce(reg, m.latency).(*prometheus.HistogramVec); ok {
		m.latency = h
	}
}

// registerRuntime adds the Go runtime and process collectors to reg unless
// they are there already.
func registerRuntime(reg prometheus.Registerer) {
	registerOnce(reg, collectors.NewGoCollector())
	registerOnce(reg, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// registerOnce registers c and returns the collector in use: c, or the one
// registered before it.
func registerOnce(reg prometheus.Registerer, c prometheus.Collector) prometheus.Collector {
	c, err := promreg.Register(reg, c)
	if err != nil {
		panic(fmt.Sprintf("httpx: registering metrics: %v", err)) // inconsistent metric definitions are a bug
	}
	return c
}

// Serve serves srv on ln until ctx is done, then shuts down gracefully
// (DefaultShutdownTimeout). It returns nil after a clean shutdown and the
// serve error otherwise.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("httpx: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultShutdownTimeout)
	defer cancel()
	err := Shutdown(sctx, srv)
	<-errc
	return err
}

// Shutdown stops srv accepting connections and waits, bounded by ctx, for
// requests in flight; past ctx it closes the remaining connections.
func Shutdown(ctx context.Context, srv *http.Server) error {
	err := srv.Shutdown(ctx)
	if err == nil {
		return nil
	}
	_ = srv.Close()
	return fmt.Errorf("httpx: graceful shutdown: %w", err)
}
