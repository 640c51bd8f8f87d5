package cycle

import "context"

//qflow:flow ping
type Ping struct{ N int }

//qflow:step flow=ping subflow=pong
func ToPong(ctx context.Context, p Ping) (PongOutput, error) { panic("subflow") }

//qflow:flow pong
type Pong = Ping

//qflow:step flow=pong subflow=ping
func ToPing(ctx context.Context, p Pong) (PingOutput, error) { panic("subflow") }

//qflow:flow solo
type Solo struct{ S string }

//qflow:step flow=solo
func Alone(ctx context.Context, s Solo) (string, error) { return s.S, nil }
