# escape=`
FROM mcr.microsoft.com/windows/servercore:ltsc2022 AS base
ENV TOOLS=C:\tools `
    AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE `
    AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
# Legacy form: the whole rest of the line is the value.
ENV GITHUB_TOKEN ghp_EXAMPLEexampleEXAMPLEexample01234567
ENV DATABASE_URL="postgres://app:url-Literal-Value-4400@db:5432/app"
ENV CACHE_URL=redis://cache:6379/0 LOG_LEVEL=info
