package p

import "context"

//qflow:flow a cron="0 * * *" tz=Europe/Berlim
type A struct{ N int }

//qflow:step flow=a
func StepA(ctx context.Context) (int, error) { return 0, nil }

//qflow:flow b cron="61 * * * *" missed=some
type B struct{ N int }

//qflow:step flow=b
func StepB(ctx context.Context) (int, error) { return 0, nil }

//qflow:flow c tz=UTC cron="0 * * * *
type C struct{ N int }

//qflow:step flow=c
func StepC(ctx context.Context) (int, error) { return 0, nil }

//qflow:flow d tz=Local missed=all
type D struct{ N int }

//qflow:step flow=d
func StepD(ctx context.Context) (int, error) { return 0, nil }
