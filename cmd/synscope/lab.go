//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/synscope/synscope/internal/lab"
)

func newLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Reproduce handshake faults in client/router/server network namespaces",
		Long: "lab builds three network namespaces (<prefix>-cli, <prefix>-rtr, <prefix>-srv) joined by veth,\n" +
			"starts a listener on the server (TCP 8080) and a background client, and injects one named fault.",
		Args: cobra.NoArgs,
	}
	var prefix string
	addPrefix := func(c *cobra.Command) {
		c.Flags().StringVar(&prefix, "prefix", lab.DefaultPrefix, "namespace name prefix ([a-z0-9-], at most 12 characters)")
	}

	var nat, noClient bool
	up := &cobra.Command{
		Use:   "up <scenario>",
		Short: "Build the lab with one scenario (replaces a lab with the same prefix)",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("lab up: want exactly one scenario name (see synscope lab list), got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(c.Context(), 2*time.Minute)
			defer cancel()
			env, err := lab.Up(ctx, args[0], lab.Options{Prefix: prefix, NAT: nat, NoClient: noClient})
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			fmt.Fprintf(out, "lab %s up: scenario %s", env.Prefix, env.Scenario)
			if env.Expect != "" {
				fmt.Fprintf(out, " (expect %s)", env.Expect)
			}
			fmt.Fprintf(out, "\n  client %s  %s %s\n  router %s\n  server %s  %s %s port %d\n",
				env.Client, env.ClientV4, env.ClientV6, env.Router, env.Server, env.ServerV4, env.ServerV6, env.Port)
			fmt.Fprintf(out, "try:  synscope doctor --netns %s\nstop: synscope lab down --prefix %s\n", env.Server, env.Prefix)
			return nil
		},
	}
	addPrefix(up)
	up.Flags().BoolVar(&nat, "nat", false, "router masquerades client traffic towards the server")
	up.Flags().BoolVar(&noClient, "no-client", false, "do not start the background client")

	down := &cobra.Command{
		Use:   "down",
		Short: "Remove the lab (agents and namespaces); nothing to do is not an error",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := lab.Down(prefix); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "lab %s down\n", prefix)
			return nil
		},
	}
	addPrefix(down)

	list := &cobra.Command{
		Use:   "list",
		Short: "List scenarios with the cause each one produces",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SCENARIO\tEXPECT\tFAMILY\tDESCRIPTION")
			for _, s := range lab.Scenarios() {
				exp := string(s.Expect)
				if exp == "" {
					exp = "(healthy)"
				}
				fmt.Fprintf(w, "%s\t%s\tv%d\t%s\n", s.Name, exp, s.Family, s.Description)
			}
			return w.Flush()
		},
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the running lab with this prefix",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			env, err := lab.Load(prefix)
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			fmt.Fprintf(out, "lab %s: scenario %s, expect %q, client family v%d, nat %v, started %s\n",
				env.Prefix, env.Scenario, env.Expect, env.Family, env.NAT, env.Started.Format(time.RFC3339))
			for _, ns := range []string{env.Client, env.Router, env.Server} {
				state := "present"
				if _, err := os.Stat("/run/netns/" + ns); err != nil {
					state = "MISSING"
				}
				fmt.Fprintf(out, "  netns %-20s %s\n", ns, state)
			}
			for _, a := range lab.AgentStatus(env.Prefix) {
				fmt.Fprintf(out, "  agent %-20s %s\n", a.Name, a.State)
			}
			ctx, cancel := context.WithTimeout(c.Context(), 5*time.Second)
			defer cancel()
			for _, fam := range []int{4, 6} {
				res := "handshake ok"
				if err := env.Dial(ctx, fam, 2*time.Second); err != nil {
					res = "FAILS: " + err.Error()
				}
				fmt.Fprintf(out, "  dial v%d: %s\n", fam, res)
			}
			return nil
		},
	}
	addPrefix(status)

	cmd.AddCommand(up, down, list, status)
	return cmd
}
