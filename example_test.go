package gears_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/gearstest"
)

// startExampleServer starts an embedded RedisGears-compatible server, so that the examples run
// anywhere; with a real RedisGears you would only create the go-redis client.
func startExampleServer() (*gearstest.Server, *redis.Client) {
	srv, err := gearstest.Start(gearstest.WithLogger(nil))
	if err != nil {
		log.Fatal(err)
	}
	return srv, redis.NewClient(&redis.Options{Addr: srv.Addr()})
}

func ExampleCommand() {
	srv, rdb := startExampleServer()
	defer srv.Close()
	defer rdb.Close()
	ctx := context.Background()

	// A Python function that runs inside Redis, next to the data: it increments a counter and returns
	// the new value. The first call registers it; later calls only send RG.TRIGGER.
	visit := gears.Command[int64]("visit", rdb, gears.Script{
		Function: "visit",
		Source: `
def visit(page):
    return execute('INCR', 'visits:' + page)
`,
	}, gears.WithMode(gears.Sync))

	for i := 0; i < 3; i++ {
		n, err := visit(ctx, "home")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("visits:", n)
	}
	// Output:
	// visits: 1
	// visits: 2
	// visits: 3
}

func ExampleCommand_then() {
	srv, rdb := startExampleServer()
	defer srv.Close()
	defer rdb.Close()
	ctx := context.Background()

	// Function returns a future that its own thread resolves; that thread must not touch Redis, so the
	// Redis work is done by Then, which receives the future's value.
	upper := gears.Command[string]("upper", rdb, gears.Script{
		Function: "work",
		Then:     "save",
		Source: `
import threading
import time

def work(key, text):
    f = gearsFuture()
    def run():
        time.sleep(0.01)  # slow work off the execution thread
        f.continueRun([key, text.upper()])
    threading.Thread(target=run).start()
    return f

def save(kv):
    execute('SET', kv[0], kv[1])
    return kv[1]
`,
	})
	out, err := upper(ctx, "greeting", "hello")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out, rdb.Get(ctx, "greeting").Val())
	// Output: HELLO HELLO
}

func ExampleNewClient() {
	srv, rdb := startExampleServer()
	defer srv.Close()
	defer rdb.Close()
	ctx := context.Background()

	c := gears.NewClient(rdb)
	_, err := c.PyExecute(ctx, "GB('CommandReader').map(lambda x: x[1:]).register(trigger='args', mode='sync', convertToStr=False)",
		&gears.PyExecuteOptions{ID: "example", Description: "echo the arguments"})
	if err != nil {
		log.Fatal(err)
	}
	recs, err := c.Trigger(ctx, "args", "a", "b")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(recs)

	_, err = c.Trigger(ctx, "nosuch")
	fmt.Println(err)
	// Output:
	// [[a b]]
	// gears: ERR subcommand not found
}

func ExampleClient_DumpRegistrations() {
	srv, rdb := startExampleServer()
	defer srv.Close()
	defer rdb.Close()
	ctx := context.Background()

	c := gears.NewClient(rdb)
	if _, err := c.PyExecute(ctx, "GB('CommandReader').register(trigger='hello', mode='sync')", &gears.PyExecuteOptions{ID: "s1"}); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Trigger(ctx, "hello"); err != nil {
		log.Fatal(err)
	}
	regs, err := c.DumpRegistrations(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range regs {
		fmt.Println(r.ID, r.Reader, r.Data.Mode, r.Data.Args.Trigger, r.Data.NumTriggered, r.Session.SessionName)
	}
	// Output: 0000000000000000000000000000000000000000-1 CommandReader sync hello 1 s1
}

func ExampleError() {
	srv, rdb := startExampleServer()
	defer srv.Close()
	defer rdb.Close()

	div := gears.Command[float64]("div", rdb, gears.Script{
		Function: "div",
		Source:   "def div(a, b):\n    return int(a) / int(b)\n",
	}, gears.WithMode(gears.Sync))
	q, err := div(context.Background(), 3, 2)
	fmt.Println(q, err)

	_, err = div(context.Background(), 1, 0)
	var ge *gears.Error
	if errors.As(err, &ge) {
		fmt.Println(ge.ExceptionType)
		fmt.Println(ge.ExceptionMessage)
		f := ge.Frames[len(ge.Frames)-1]
		fmt.Println(f.Func, f.Line)
	}
	// Output:
	// 1.5 <nil>
	// ZeroDivisionError
	// division by zero
	// div 2
}

func ExampleDeploy() {
	srv, rdb := startExampleServer()
	defer srv.Close()
	defer rdb.Close()
	ctx := context.Background()

	// A service ships its gear functions as .py files (//go:embed) and deploys them at start-up. Every
	// instance may do so at once: one creates the session, the others find it, and a new release
	// upgrades it atomically.
	s := gears.Session{ID: "greetings", Source: `
GB('CommandReader').map(lambda x: 'hello ' + x[1]).register(trigger='hello', mode='sync')
`}
	for i := 0; i < 2; i++ {
		d, err := gears.Deploy(ctx, rdb, s)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(d.Action, len(d.RegistrationIDs), "registration")
	}
	s.Source = `
GB('CommandReader').map(lambda x: 'hi ' + x[1]).register(trigger='hello', mode='sync')
`
	d, err := gears.Deploy(ctx, rdb, s)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Action)
	reply, err := gears.NewClient(rdb).Trigger(ctx, "hello", "gears")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply...)
	// Output:
	// created 1 registration
	// unchanged 1 registration
	// upgraded
	// hi gears
}

func ExampleBuilder_Run() {
	srv, rdb := startExampleServer()
	defer srv.Close()
	defer rdb.Close()
	ctx := context.Background()

	// A batch job built in Go; the callables are Python source. With a real RedisGears the reader would
	// typically be gears.KeysReader("user:*").
	res, err := gears.PythonReader("words").
		Define("def words():\n    return 'the cat saw the dog'.split()\n").
		CountBy("").
		Map("lambda r: '%s=%d' % (r['key'], r['value'])").
		Sort(true).
		Run(ctx, rdb)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Records...)
	// Output: cat=1 dog=1 saw=1 the=2
}

func ExampleBuilder_Register() {
	srv, rdb := startExampleServer()
	defer srv.Close()
	defer rdb.Close()
	ctx := context.Background()

	// A registration deployed as a session: created now, upgraded when the function changes.
	d, err := gears.CommandReader().
		Map("lambda x: execute('INCRBY', x[1], x[2])").
		Register(ctx, rdb, gears.WithTrigger("add"), gears.WithSessionID("counters"), gears.WithMode(gears.Sync))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Action)
	reply, err := gears.NewClient(rdb).Trigger(ctx, "add", "hits", 5)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply...)
	// Output:
	// created
	// 5
}

func ExampleKeysReader() {
	srv, rdb := startExampleServer()
	defer srv.Close()
	defer rdb.Close()
	ctx := context.Background()
	for id, country := range map[string]string{"1": "NL", "2": "FR", "3": "NL"} {
		rdb.HSet(ctx, "user:"+id, "country", country)
	}

	// A batch query over the keys, run next to the data: users per country.
	res, err := gears.KeysReader("user:*").
		Map("lambda r: r['value']['country']").
		CountBy("").
		Map("lambda r: '%s %d' % (r['key'], r['value'])").
		Sort(true).
		Run(ctx, rdb)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Records...)
	// Output: FR 1 NL 2
}

func ExampleBuilder_Register_keys() {
	srv, rdb := startExampleServer()
	defer srv.Close()
	defer rdb.Close()
	ctx := context.Background()

	// An event registration: every SET under greeting: stores the upper-cased value beside it, inside
	// the server, before the SET replies (sync mode).
	_, err := gears.KeysReader("greeting:*").
		Foreach("lambda r: execute('SET', 'upper:' + r['key'], r['value'].upper())").
		Register(ctx, rdb, gears.WithSessionID("greetings"), gears.WithMode(gears.Sync),
			gears.WithEventTypes("set"))
	if err != nil {
		log.Fatal(err)
	}
	rdb.Set(ctx, "greeting:en", "hello", 0)
	fmt.Println(rdb.Get(ctx, "upper:greeting:en").Val())
	// Output: HELLO
}
