// Package examples is a module outside clipgate's own that uses clipgate the way a user
// does, through its exported names only: package camera is a camera application built
// on devicekit, package backend a backend service built on events, and the test of this
// package runs both against the whole stack in-process with clipgatetest.
//
// Its go.mod replaces github.com/clipgate/clipgate with the checkout above it, so that
// it builds against the code beside it. Build and test it from this directory:
//
//	go vet ./... && go test -race ./...
package examples
