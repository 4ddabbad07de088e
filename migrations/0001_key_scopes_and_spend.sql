CREATE TABLE `job_spend` (
	`job_id` text PRIMARY KEY NOT NULL,
	`api_key_id` text NOT NULL,
	`cost_usd` real DEFAULT 0 NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `job_spend_key` ON `job_spend` (`api_key_id`);--> statement-breakpoint
ALTER TABLE `api_keys` ADD `scopes` text;--> statement-breakpoint
ALTER TABLE `api_keys` ADD `spend_limit_usd` real;